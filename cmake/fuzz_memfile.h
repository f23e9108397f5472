/* For fuzz targets whose parser takes a path: the input as a file (an anonymous memfd,
 * named /proc/self/fd/N, so nothing touches the disk). One per process, rewritten for each
 * input. */
#ifndef STATION_CMAKE_FUZZ_MEMFILE_H
#define STATION_CMAKE_FUZZ_MEMFILE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Path of a regular file holding exactly data[0..size); aborts if the memfd cannot be made
 * (a harness fault, not a finding). */
static inline const char *fuzz_memfile(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("fuzz-input", MFD_CLOEXEC);
        if (fd < 0)
            abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
        abort();
    return path;
}

#endif
