/* Synthetic firmware: a deterministic "combined" image shaped like a real Katapult +
 * application build (Katapult vector table and "CanBoot!" marker, application at the MCU's
 * Katapult offset with its own vector table), so the station's first job runs where no
 * real firmware is at hand. The bytes are a fixed pseudo-random stream: the same call
 * always gives the same SHA-256, which job files can pin. */
#ifndef STATION_PROTOCOLS_SIM_SYNTH_H
#define STATION_PROTOCOLS_SIM_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "station/core/err.h"
#include "station/core/mcu.h"

/* Build a combined image of `size` bytes (at least katapult_app_offset + 1024) for mcu.
 * *out is malloc'd (free it). */
int st_synth_combined(const st_mcu *mcu, size_t size, uint8_t **out, st_err *err);
/* The same with another application (seed 0 is st_synth_combined's): the bootloader part
 * is identical, so units "holding an older release" differ only in the application. */
int st_synth_combined_seeded(const st_mcu *mcu, size_t size, uint32_t seed, uint8_t **out,
                             st_err *err);

/* Default size: like the real Cartographer V4 USB combined image (35,984 bytes). */
#define ST_SYNTH_DEFAULT_SIZE 35984u

#endif
