/* Handling of untrusted text (USB strings, MCU names, serials): what may reach a
 * terminal, a report or a file name. */
#ifndef STATION_CORE_TEXT_H
#define STATION_CORE_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Copy in to out keeping printable ASCII (0x20-0x7e); every other byte becomes '?'.
 * Always NUL-terminates (cap >= 1). Returns out. */
char *st_text_printable(const char *in, char *out, size_t cap);

/* Copy in to out as a safe file-name component: [A-Za-z0-9._-] kept, anything else '_',
 * no leading '.', never empty ("unknown"). Returns out. */
char *st_text_filename(const char *in, char *out, size_t cap);

/* A name a file gives a thing of its own (an image role in a job, and so in its reports):
 * 1..ST_TEXT_NAME_MAX bytes, each a letter, a digit, '.', '_' or '-'. */
#define ST_TEXT_NAME_MAX 31
bool st_text_is_name(const char *s);

/* Bounded copy that always NUL-terminates; returns out. */
char *st_strlcpy(char *out, const char *in, size_t cap);

#endif
