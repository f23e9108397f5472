/* Firmware images: load a raw .bin (load address from the job) or a DfuSe .dfu container
 * (addresses from the file), and validate before any unit is touched. */
#ifndef STATION_CORE_IMAGE_H
#define STATION_CORE_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "err.h"
#include "mcu.h"

typedef struct st_image {
    char *path;          /* as given; owned */
    uint8_t *data;       /* owned, size bytes */
    size_t size;
    uint32_t load_addr;  /* address of data[0] on the target */
    uint8_t sha256[ST_SHA256_LEN]; /* of data as loaded (the file for .bin) */
    char sha256_hex[2 * ST_SHA256_LEN + 1];
    char format[8];      /* "bin" or "dfu" */
} st_image;

/* Load a file. For .bin, load_addr is where it goes. For .dfu (recognised by its "DfuSe"
 * prefix), the elements' addresses are used and load_addr must be 0 or equal the first
 * element's address; elements are merged into one block with 0xFF gaps (gap <= 64 KiB).
 * On success *out is a new image (free with st_image_free). */
int st_image_load(const char *path, uint32_t load_addr, st_image **out, st_err *err);

/* Build an image from memory (copied); path is a label for messages. */
int st_image_from_memory(const char *label, const void *data, size_t size, uint32_t load_addr,
                         st_image **out, st_err *err);

void st_image_free(st_image *img);

/* Compare the image's SHA-256 with a pinned 64-hex-digit string. */
int st_image_check_digest(const st_image *img, const char *pinned_hex, st_err *err);

/* The image lies wholly inside [start, start+size). */
int st_image_check_fit(const st_image *img, uint32_t start, uint32_t size, st_err *err);

/* Cortex-M vector table at the image start: initial SP inside the MCU's SRAM (top
 * included) and word-aligned; reset vector has the Thumb bit and points inside the image. */
int st_image_check_vectors(const st_image *img, const st_mcu *mcu, st_err *err);

/* What an image's bytes say about it, without running it. */
typedef struct st_image_facts {
    bool has_vectors;     /* SP in the MCU's SRAM and a Thumb reset vector in its flash */
    uint32_t sp, reset;   /* words 0 and 1 */
    bool link_known;
    /* The address the image is linked for: the lowest of the 15 system exception handlers
     * that point into main flash, rounded down to a flash page. A Cortex-M vector table
     * sits at the start of an image and its code follows it, so this is the image's base
     * unless a linker script puts more than a page between them (none we know does). */
    uint32_t link_addr;
    bool katapult;        /* "CanBoot!" 8 bytes before the reset handler (Katapult's mark) */
    bool usb_device;      /* a USB device descriptor (18 bytes, 12 01, USB 1.1/2.0) */
    uint16_t usb_vid, usb_pid; /* the first such descriptor's ids */
} st_image_facts;

/* Read facts from data[0..n) (an image file, or flash contents from its start). */
void st_image_facts_of(const uint8_t *data, size_t n, const st_mcu *mcu, st_image_facts *out);

/* The image is linked for the address it is loaded at: ST_ERR_MISMATCH naming both
 * addresses otherwise (an application linked behind a bootloader, written at the start of
 * flash, would never boot). Passes when the link address cannot be told. */
int st_image_check_link(const st_image *img, const st_mcu *mcu, st_err *err);

/* The checks for an image bound for mcu's main flash: fit, vectors, link address, digest. */
int st_image_validate(const st_image *img, const st_mcu *mcu, const char *pinned_hex, st_err *err);

#endif
