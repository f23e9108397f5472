/* Logging front: formats and hands the line to the caller's sink. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

void st_log(const st_logger *lg, st_log_level level, const char *module, const char *fmt, ...)
{
    if (!lg || !lg->write || level > lg->max)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    lg->write(lg->ctx, level, module ? module : "-", buf);
}

const char *st_log_level_name(st_log_level level)
{
    switch (level) {
    case ST_LOG_ERROR: return "error";
    case ST_LOG_WARN: return "warn";
    case ST_LOG_INFO: return "info";
    default: return "debug";
    }
}
