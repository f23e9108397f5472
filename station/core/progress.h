/* Progress reporting from engines to whoever draws it (the CLI's progress bar, a log).
 * Engines call st_progress_update; a NULL st_progress or callback is ignored. */
#ifndef STATION_CORE_PROGRESS_H
#define STATION_CORE_PROGRESS_H

#include <stdint.h>

typedef struct st_progress {
    /* phase: "erase", "write", "verify", "read"...; done/total in bytes (or blocks). */
    void (*update)(void *ctx, const char *phase, uint64_t done, uint64_t total);
    void *ctx;
} st_progress;

static inline void st_progress_update(const st_progress *p, const char *phase, uint64_t done,
                                      uint64_t total)
{
    if (p && p->update)
        p->update(p->ctx, phase, done, total);
}

#endif
