/* Operator screen (ncurses): slot panels with block letters, totals, log lines. */
#include "station/screen.h"

#include <curses.h>
#include <stdlib.h>
#include <string.h>

/* 5x5 glyphs, '#' = ink, for the words and digits the panels show. */
typedef struct glyph {
    char c;
    const char *rows[5];
} glyph;

static const glyph font[] = {
    { 'A', { " ### ", "#   #", "#####", "#   #", "#   #" } },
    { 'B', { "#### ", "#   #", "#### ", "#   #", "#### " } },
    { 'C', { " ####", "#    ", "#    ", "#    ", " ####" } },
    { 'D', { "#### ", "#   #", "#   #", "#   #", "#### " } },
    { 'E', { "#####", "#    ", "#### ", "#    ", "#####" } },
    { 'F', { "#####", "#    ", "#### ", "#    ", "#    " } },
    { 'I', { "#####", "  #  ", "  #  ", "  #  ", "#####" } },
    { 'L', { "#    ", "#    ", "#    ", "#    ", "#####" } },
    { 'N', { "#   #", "##  #", "# # #", "#  ##", "#   #" } },
    { 'O', { " ### ", "#   #", "#   #", "#   #", " ### " } },
    { 'P', { "#### ", "#   #", "#### ", "#    ", "#    " } },
    { 'R', { "#### ", "#   #", "#### ", "#  # ", "#   #" } },
    { 'S', { " ####", "#    ", " ### ", "    #", "#### " } },
    { 'T', { "#####", "  #  ", "  #  ", "  #  ", "  #  " } },
    { 'U', { "#   #", "#   #", "#   #", "#   #", " ### " } },
    { 'W', { "#   #", "#   #", "# # #", "## ##", "#   #" } },
    { 'Y', { "#   #", " # # ", "  #  ", "  #  ", "  #  " } },
    { '0', { " ### ", "#  ##", "# # #", "##  #", " ### " } },
    { '1', { "  #  ", " ##  ", "  #  ", "  #  ", " ### " } },
    { '2', { " ### ", "#   #", "  ## ", " #   ", "#####" } },
    { '3', { "#### ", "    #", " ### ", "    #", "#### " } },
    { '4', { "#   #", "#   #", "#####", "    #", "    #" } },
    { '5', { "#####", "#    ", "#### ", "    #", "#### " } },
    { '6', { " ### ", "#    ", "#### ", "#   #", " ### " } },
    { '7', { "#####", "    #", "   # ", "  #  ", "  #  " } },
    { '8', { " ### ", "#   #", " ### ", "#   #", " ### " } },
    { '9', { " ### ", "#   #", " ####", "    #", " ### " } },
    { '-', { "     ", "     ", "#####", "     ", "     " } },
};

void st_screen_big_row(const char *text, int r, char *out, size_t cap)
{
    size_t o = 0;
    if (!cap)
        return;
    for (const char *c = text; *c && r >= 0 && r < 5; c++) {
        const char *row = "     ";
        for (size_t g = 0; g < sizeof font / sizeof font[0]; g++)
            if (font[g].c == *c)
                row = font[g].rows[r];
        if (c != text && o + 1 < cap)
            out[o++] = ' ';
        for (int k = 0; k < 5 && o + 1 < cap; k++)
            out[o++] = row[k];
    }
    out[o] = '\0';
}

struct st_screen {
    SCREEN *scr;
    bool color;
};

enum { PAIR_PASS = 1, PAIR_FAIL, PAIR_BUSY, PAIR_HEAD };

#define PANEL_W 40
#define PANEL_H 11

st_screen *st_screen_open(FILE *out, bool color)
{
    st_screen *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    /* newterm on the caller's stream: nothing else of the program's output is touched. */
    s->scr = newterm(NULL, out, stdin);
    if (!s->scr) {
        free(s);
        return NULL;
    }
    set_term(s->scr);
    curs_set(0);
    noecho();
    s->color = color && has_colors();
    if (s->color) {
        start_color();
        use_default_colors();
        init_pair(PAIR_PASS, COLOR_GREEN, -1);
        init_pair(PAIR_FAIL, COLOR_RED, -1);
        init_pair(PAIR_BUSY, COLOR_YELLOW, -1);
        init_pair(PAIR_HEAD, COLOR_CYAN, -1);
    }
    return s;
}

void st_screen_close(st_screen *s)
{
    if (!s)
        return;
    set_term(s->scr);
    endwin();
    delscreen(s->scr);
    free(s);
}

static int pair_of(const char *big)
{
    if (!strcmp(big, "PASS"))
        return PAIR_PASS;
    if (!strcmp(big, "FAIL") || !strcmp(big, "STOP"))
        return PAIR_FAIL;
    if (!strcmp(big, "BUSY") || !strcmp(big, "SCAN"))
        return PAIR_BUSY;
    return 0;
}

/* Text clipped to width w at (y, x). */
static void put(int y, int x, int w, const char *text)
{
    if (w <= 0 || y < 0 || y >= LINES)
        return;
    mvaddnstr(y, x, text, w);
}

static void panel(st_screen *s, int y, int x, int w, int h, const st_screen_slot *p)
{
    char buf[256];
    /* Frame with the slot's name in the top edge. */
    /* Plain '=' edges: line-drawing characters depend on the terminal's font. */
    mvhline(y, x, '=', w);
    mvhline(y + h - 1, x, '=', w);
    snprintf(buf, sizeof buf, " slot %d%s%s%s ", p->id, p->name && *p->name ? " (" : "",
             p->name ? p->name : "", p->name && *p->name ? ")" : "");
    put(y, x + 2, w - 4, buf);
    int pair = s->color ? pair_of(p->big) : 0;
    bool big = h >= PANEL_H && w >= 38;
    int row = y + 1;
    if (big) {
        /* The slot number and the state word in block letters: the two things an operator
         * reads from across the line. */
        char num[8];
        snprintf(num, sizeof num, "%d", p->id % 100);
        for (int r = 0; r < 5; r++) {
            char n[32], wd[64];
            st_screen_big_row(num, r, n, sizeof n);
            st_screen_big_row(p->big, r, wd, sizeof wd);
            put(row + r, x + 1, 12, n);
            if (pair)
                attron(COLOR_PAIR(pair) | A_BOLD);
            put(row + r, x + 14, w - 15, wd);
            if (pair)
                attroff(COLOR_PAIR(pair) | A_BOLD);
        }
        row += 5;
    } else {
        if (pair)
            attron(COLOR_PAIR(pair) | A_BOLD);
        snprintf(buf, sizeof buf, "%s", p->big);
        put(row++, x + 1, w - 2, buf);
        if (pair)
            attroff(COLOR_PAIR(pair) | A_BOLD);
    }
    if (p->percent >= 0 && w > 20) {
        int bw = w - 10;
        char bar[128];
        int fill = p->percent * bw / 100;
        for (int i = 0; i < bw && i < (int)sizeof bar - 1; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[bw < (int)sizeof bar - 1 ? bw : (int)sizeof bar - 1] = '\0';
        snprintf(buf, sizeof buf, "%s", p->state);
        put(row++, x + 1, w - 2, buf);
        snprintf(buf, sizeof buf, "[%s] %3d%%", bar, p->percent);
        if (row < y + h - 1)
            put(row++, x + 1, w - 2, buf);
    } else {
        put(row++, x + 1, w - 2, p->state);
    }
    if (row < y + h - 1) {
        snprintf(buf, sizeof buf, "last: %s %s", p->verdict && *p->verdict ? p->verdict : "-",
                 p->unit ? p->unit : "");
        put(row++, x + 1, w - 2, buf);
    }
    if (row < y + h - 1 && p->cause && *p->cause)
        put(row++, x + 1, w - 2, p->cause);
    if (row < y + h - 1) {
        snprintf(buf, sizeof buf, "units %u  pass %u  fail %u", p->units, p->pass, p->fail);
        put(y + h - 2, x + 1, w - 2, buf);
    }
}

void st_screen_draw(st_screen *s, const st_screen_slot *slots, size_t n,
                    const st_screen_totals *t, const char *const *log, size_t nlog)
{
    set_term(s->scr);
    erase();
    char buf[512];
    if (s->color)
        attron(COLOR_PAIR(PAIR_HEAD) | A_BOLD);
    snprintf(buf, sizeof buf, "station produce  job %s  lot %s  station %s  operator %s", t->job,
             t->lot && *t->lot ? t->lot : "-", t->station, t->operator_name);
    put(0, 0, COLS, buf);
    if (s->color)
        attroff(COLOR_PAIR(PAIR_HEAD) | A_BOLD);
    /* Panels in a grid: as many columns as fit, then as tall as the rows allow. */
    int cols = COLS / PANEL_W;
    if (cols < 1)
        cols = 1;
    if ((size_t)cols > n)
        cols = (int)n;
    int rows = (int)((n + (size_t)cols - 1) / (size_t)cols);
    int avail = LINES - 4;
    int h = rows ? avail / rows : 0;
    if (h > PANEL_H)
        h = PANEL_H;
    int w = COLS / cols;
    if (w > PANEL_W + 8)
        w = PANEL_W + 8;
    for (size_t i = 0; i < n && h >= 4; i++)
        panel(s, 1 + (int)(i / (size_t)cols) * h, (int)(i % (size_t)cols) * w, w - 1, h, &slots[i]);
    int y = 1 + rows * (h >= 4 ? h : 0);
    if (h < 4) {
        /* Too small for panels: one line per slot. */
        for (size_t i = 0; i < n && y < LINES - 2; i++, y++) {
            snprintf(buf, sizeof buf, "slot %d %-5s %s  last %s", slots[i].id, slots[i].big,
                     slots[i].state, slots[i].verdict && *slots[i].verdict ? slots[i].verdict : "-");
            put(y, 0, COLS, buf);
        }
    }
    char yield[32], uph[32];
    if (t->first_pass_yield >= 0)
        snprintf(yield, sizeof yield, "%.1f%%", t->first_pass_yield);
    else
        snprintf(yield, sizeof yield, "-");
    if (t->units_per_hour >= 0)
        snprintf(uph, sizeof uph, "%.0f", t->units_per_hour);
    else
        snprintf(uph, sizeof uph, "-");
    snprintf(buf, sizeof buf, "TOTAL units %u  pass %u  fail %u  incomplete %u  refused %u  "
             "yield %s  units/h %s", t->units, t->pass, t->fail, t->incomplete, t->refused, yield, uph);
    attron(A_BOLD);
    put(y++, 0, COLS, buf);
    attroff(A_BOLD);
    put(y++, 0, COLS, t->footer ? t->footer : "");
    for (size_t i = 0; i < nlog && y < LINES; i++)
        put(y++, 0, COLS, log[i]);
    refresh();
}
