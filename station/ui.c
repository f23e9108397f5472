/* Operator output: per-slot progress bars on a terminal, plain lines otherwise. */
#include "station/ui.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "station/core/clock.h"

#define BAR 24
#define REDRAW_US 100000u /* 10 redraws a second are plenty and cost nothing on a Pi */

typedef struct row {
    st_ui *ui;
    char label[24];           /* "slot 2", "unit 0a0b0c0d0e01" */
    char step[24];
    char phase[16];
    char *final;              /* verdict and detail, whole (owned); NULL while running */
    uint64_t done, total, phase_start_us, last_draw_us;
    uint64_t base;            /* bytes already done at phase_start_us */
    int attempt;
    int lines_drawn;          /* terminal lines of this row in the last redraw */
} row;

struct st_ui {
    FILE *out;
    bool fancy;
    int n;
    row *rows;
    pthread_mutex_t lock;
    st_logger logger;
    bool drawn;
};

static void fmt_bytes(char *b, size_t cap, double v)
{
    if (v >= 1024 * 1024)
        snprintf(b, cap, "%.1f MiB", v / 1048576.0);
    else if (v >= 1024)
        snprintf(b, cap, "%.1f KiB", v / 1024.0);
    else
        snprintf(b, cap, "%.0f B", v);
}

/* Lines a row takes on the terminal: a final line may carry its report path on a second. */
static int row_lines(const row *r)
{
    int n = 1;
    for (const char *p = r->final; p && *p; p++)
        n += *p == '\n';
    return n;
}

static int rows_lines(const st_ui *ui)
{
    int n = 0;
    for (int i = 0; i < ui->n; i++)
        n += ui->rows[i].lines_drawn;
    return n;
}

/* The running line of a row (bounded: step names, numbers). Final lines are printed whole
 * by print_row instead. */
static void line_of(const row *r, char *buf, size_t cap)
{
    if (!r->total) {
        snprintf(buf, cap, "%-8s %-16s%s", r->label, r->step[0] ? r->step : "waiting",
                 r->attempt > 1 ? " (retry)" : "");
        return;
    }
    int fill = (int)(r->done * BAR / r->total);
    char bar[BAR + 1];
    for (int i = 0; i < BAR; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[BAR] = '\0';
    /* The rate counts from the first report of the phase: the bytes it already carried
     * took an unknown time. */
    double secs = (double)(st_now_us() - r->phase_start_us) / 1e6;
    double rate = secs > 0.02 && r->done > r->base ? (double)(r->done - r->base) / secs : 0;
    char d[16], t[16], rt[24], eta[24];
    fmt_bytes(d, sizeof d, (double)r->done);
    fmt_bytes(t, sizeof t, (double)r->total);
    if (rate > 0) {
        fmt_bytes(rt, sizeof rt - 2, rate);
        strcat(rt, "/s");
        snprintf(eta, sizeof eta, "ETA %.1fs", (double)(r->total - r->done) / rate);
    } else {
        snprintf(rt, sizeof rt, "-");
        snprintf(eta, sizeof eta, "ETA -");
    }
    snprintf(buf, cap, "%-8s %-7s [%s] %3d%%  %s/%s  %s  %s", r->label, r->phase, bar,
             (int)(r->done * 100 / r->total), d, t, rt, eta);
}

/* One row, each of its lines cleared first on a terminal. The final line is never cut: it
 * carries the cause (ending in an errno reason such as "Read-only file system") and the
 * report path, which the operator needs whole. */
static void print_row(st_ui *ui, row *r)
{
    const char *clear = ui->fancy ? "\r\033[2K" : "";
    if (r->final) {
        fprintf(ui->out, "%s%-8s ", clear, r->label);
        for (const char *p = r->final; *p; p++) {
            fputc(*p, ui->out);
            if (*p == '\n')
                fputs(clear, ui->out);
        }
        fputc('\n', ui->out);
    } else {
        char buf[200];
        line_of(r, buf, sizeof buf);
        fprintf(ui->out, "%s%s\n", clear, buf);
    }
    r->lines_drawn = row_lines(r);
}

/* Redraw all rows in place (fancy) with the cursor left below them. Lock held. */
static void redraw(st_ui *ui)
{
    if (ui->drawn && rows_lines(ui) > 0)
        fprintf(ui->out, "\033[%dA", rows_lines(ui));
    for (int i = 0; i < ui->n; i++)
        print_row(ui, &ui->rows[i]);
    ui->drawn = true;
    fflush(ui->out);
}

static void plain(st_ui *ui, row *r)
{
    print_row(ui, r);
    fflush(ui->out);
}

static void on_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    row *r = ctx;
    st_ui *ui = r->ui;
    pthread_mutex_lock(&ui->lock);
    uint64_t now = st_now_us();
    bool new_phase = strncmp(r->phase, phase, sizeof r->phase - 1) != 0 || done < r->done;
    if (new_phase) {
        snprintf(r->phase, sizeof r->phase, "%s", phase);
        r->phase_start_us = now;
        r->base = done;
    }
    r->done = done;
    r->total = total;
    if (ui->fancy) {
        if (new_phase || done == total || now - r->last_draw_us >= REDRAW_US) {
            r->last_draw_us = now;
            redraw(ui);
        }
    } else if (done == total && total) {
        double secs = (double)(now - r->phase_start_us) / 1e6;
        char b[16], rt[16];
        fmt_bytes(b, sizeof b, (double)total);
        fmt_bytes(rt, sizeof rt, secs > 0.0005 ? (double)total / secs : 0);
        if (secs < 0.001)
            fprintf(ui->out, "%-8s %s: %s\n", r->label, phase, b);
        else
            fprintf(ui->out, "%-8s %s: %s in %.2f s (%s/s)\n", r->label, phase, b, secs, rt);
        fflush(ui->out);
    }
    pthread_mutex_unlock(&ui->lock);
}

static void log_write(void *ctx, st_log_level level, const char *module, const char *msg)
{
    st_ui *ui = ctx;
    pthread_mutex_lock(&ui->lock);
    int up = ui->fancy && ui->drawn ? rows_lines(ui) : 0;
    if (up > 0) {
        fprintf(ui->out, "\033[%dA\r\033[2K", up);
        ui->drawn = false;
    }
    fprintf(stderr, "station: %s: %s%s\n", module,
            level == ST_LOG_ERROR ? "error: " : level == ST_LOG_WARN ? "warning: " : "", msg);
    fflush(stderr);
    if (ui->fancy) {
        /* The log line took the rows' place: draw them again below it. */
        for (int i = 0; i < up; i++)
            fprintf(ui->out, "\n");
        ui->drawn = up > 0;
        redraw(ui);
    }
    pthread_mutex_unlock(&ui->lock);
}

st_ui *st_ui_new(FILE *out, int nslots, bool fancy, st_log_level level)
{
    st_ui *ui = calloc(1, sizeof *ui);
    if (!ui)
        return NULL;
    ui->rows = calloc((size_t)(nslots > 0 ? nslots : 1), sizeof *ui->rows);
    if (!ui->rows) {
        free(ui);
        return NULL;
    }
    ui->out = out;
    ui->n = nslots;
    ui->fancy = fancy;
    pthread_mutex_init(&ui->lock, NULL);
    ui->logger.write = log_write;
    ui->logger.ctx = ui;
    ui->logger.max = level;
    for (int i = 0; i < nslots; i++)
        ui->rows[i].ui = ui;
    return ui;
}

void st_ui_free(st_ui *ui)
{
    if (!ui)
        return;
    pthread_mutex_destroy(&ui->lock);
    for (int i = 0; i < ui->n; i++)
        free(ui->rows[i].final);
    free(ui->rows);
    free(ui);
}

void st_ui_bind(st_ui *ui, int i, const char *label, st_progress *p)
{
    snprintf(ui->rows[i].label, sizeof ui->rows[i].label, "%s", label);
    p->update = on_progress;
    p->ctx = &ui->rows[i];
}

void st_ui_step(st_ui *ui, int i, const char *step, int attempt)
{
    pthread_mutex_lock(&ui->lock);
    row *r = &ui->rows[i];
    snprintf(r->step, sizeof r->step, "%s", step);
    r->attempt = attempt;
    r->total = r->done = 0;
    r->phase[0] = '\0';
    if (ui->fancy)
        redraw(ui);
    else {
        char buf[64];
        snprintf(buf, sizeof buf, "%s%s", step, attempt > 1 ? " (retry)" : "");
        fprintf(ui->out, "%-8s %s\n", r->label, buf);
        fflush(ui->out);
    }
    pthread_mutex_unlock(&ui->lock);
}

void st_ui_done(st_ui *ui, int i, const char *verdict, const char *detail)
{
    pthread_mutex_lock(&ui->lock);
    row *r = &ui->rows[i];
    char *line = NULL;
    if (asprintf(&line, "%s  %s", verdict, detail ? detail : "") < 0)
        line = NULL;
    free(r->final);
    /* Out of memory: the verdict alone still reaches the operator. */
    r->final = line ? line : strdup(verdict);
    if (ui->fancy)
        redraw(ui);
    else
        plain(ui, r);
    pthread_mutex_unlock(&ui->lock);
}

st_ui_caps st_ui_caps_for(bool is_tty, const char *term, const char *no_color)
{
    /* A terminal that cannot move the cursor or set colours says so with TERM=dumb (Emacs
     * shell buffers, some serial consoles); no TERM at all is treated the same. */
    bool dumb = !term || !*term || strcmp(term, "dumb") == 0;
    st_ui_caps c = { .cursor = is_tty && !dumb, .color = is_tty && !dumb };
    /* https://no-color.org: NO_COLOR present and not empty disables colour, nothing else. */
    if (no_color && *no_color)
        c.color = false;
    return c;
}

const st_logger *st_ui_logger(st_ui *ui)
{
    return &ui->logger;
}
