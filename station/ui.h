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
void st_ui_done(st_ui *ui, int row, const char *verdict, const char *detail);

/* A logger that writes "station: <module>: <msg>" lines without tearing the bars. */
const st_logger *st_ui_logger(st_ui *ui);

#endif
