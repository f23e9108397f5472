/* Operator output: one progress line per slot (bar, bytes, rate, ETA) on a terminal, plain
 * lines otherwise, and the logger sink that writes station messages to stderr. The only
 * place besides main.c that writes to the terminal. */
#ifndef STATION_UI_H
#define STATION_UI_H

#include <stdbool.h>
#include <stdio.h>

#include "station/core/log.h"
#include "station/core/progress.h"

typedef struct st_ui st_ui;

/* Lines for nslots slots on out; fancy = redraw bars in place (a terminal). */
st_ui *st_ui_new(FILE *out, int nslots, bool fancy, st_log_level level);
void st_ui_free(st_ui *ui);

/* Row i shows label ("slot 2", or "unit <uuid>" for a unit in no slot); progress/step hooks
 * for the job engine of that row. */
void st_ui_bind(st_ui *ui, int row, const char *label, st_progress *progress_out);
void st_ui_step(st_ui *ui, int row, const char *step, int attempt);
/* The row's final line: "<verdict>  <detail>", printed whole (detail may hold a second
 * line, e.g. "\n         report <path>"; it is never cut). */
void st_ui_done(st_ui *ui, int row, const char *verdict, const char *detail);

/* What may be sent to the operator's terminal. */
typedef struct st_ui_caps {
    bool cursor; /* cursor movement and line clearing (progress bars redrawn in place) */
    bool color;  /* SGR colour escapes */
} st_ui_caps;

/* Decide from whether the output is a terminal and the values of TERM and NO_COLOR (NULL
 * when unset): TERM=dumb, empty or unset means neither; NO_COLOR set to anything but ""
 * means no colour (https://no-color.org). The caller reads the environment. */
st_ui_caps st_ui_caps_for(bool is_tty, const char *term, const char *no_color);

/* A logger that writes "station: <module>: <msg>" lines without tearing the bars. */
const st_logger *st_ui_logger(st_ui *ui);

#endif
