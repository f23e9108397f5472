/* Handling of untrusted text (USB strings, MCU names, serials): what may reach a
 * terminal, a report or a file name. */
#ifndef STATION_CORE_TEXT_H
#define STATION_CORE_TEXT_H

#include <stddef.h>

/* Copy in to out keeping printable ASCII (0x20-0x7e); every other byte becomes '?'.
 * Always NUL-terminates (cap >= 1). Returns out. */
char *st_text_printable(const char *in, char *out, size_t cap);

/* Copy in to out as a safe file-name component: [A-Za-z0-9._-] kept, anything else '_',
 * no leading '.', never empty ("unknown"). Returns out. */
char *st_text_filename(const char *in, char *out, size_t cap);

/* Bounded copy that always NUL-terminates; returns out. */
char *st_strlcpy(char *out, const char *in, size_t cap);

#endif
