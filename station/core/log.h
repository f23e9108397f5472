/* One logging interface for every library in the station: a sink owned by the caller.
 * Library code logs through it and never prints; a NULL logger is silent. */
#ifndef STATION_CORE_LOG_H
#define STATION_CORE_LOG_H

typedef enum st_log_level {
    ST_LOG_ERROR = 0,
    ST_LOG_WARN = 1,
    ST_LOG_INFO = 2,
    ST_LOG_DEBUG = 3,
} st_log_level;

typedef struct st_logger {
    /* Called with a formatted, newline-free message. Must be thread-safe if shared. */
    void (*write)(void *ctx, st_log_level level, const char *module, const char *msg);
    void *ctx;
    st_log_level max; /* messages above this level are dropped */
} st_logger;

void st_log(const st_logger *lg, st_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

const char *st_log_level_name(st_log_level level);

#define ST_LOGE(lg, mod, ...) st_log((lg), ST_LOG_ERROR, (mod), __VA_ARGS__)
#define ST_LOGW(lg, mod, ...) st_log((lg), ST_LOG_WARN, (mod), __VA_ARGS__)
#define ST_LOGI(lg, mod, ...) st_log((lg), ST_LOG_INFO, (mod), __VA_ARGS__)
#define ST_LOGD(lg, mod, ...) st_log((lg), ST_LOG_DEBUG, (mod), __VA_ARGS__)

#endif
