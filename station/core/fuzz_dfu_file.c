/* Fuzz target: firmware image files, DfuSe `.dfu` containers above all (st_image_load: the
 * prefix, target and element headers, the DFU suffix), then the pre-flight checks a job
 * runs on a loaded image. Inputs of even length get their DFU suffix CRC fixed up first,
 * so the fuzzer spends its time behind the CRC check as well as on it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cmake/fuzz_memfile.h"
#include "station/core/image.h"
#include "station/core/mcu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    if (size >= 27 && size % 2 == 0) {
        uint32_t crc = ~(uint32_t)crc32(0L, copy, (uInt)(size - 4));
        for (int i = 0; i < 4; i++)
            copy[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    }
    const char *path = fuzz_memfile(copy, size);
    free(copy);
    st_image *img = NULL;
    st_err err;
    if (st_image_load(path, 0, &img, &err) == 0) {
        if (img->size == 0 || !img->data)
            abort(); /* a loaded image always holds bytes */
        const st_mcu *mcu = st_mcu_find("stm32g431xx");
        st_image_validate(img, mcu, img->sha256_hex, &err);
        st_image_check_fit(img, mcu->flash_start, mcu->flash_size, &err);
        st_image_free(img);
    }
    return 0;
}
