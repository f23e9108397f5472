/* Fuzz target: the data dictionary parser on untrusted bytes: the input as JSON text and,
 * inflated, as the zlib stream identify delivers (and an image embeds), and the image
 * readers over the input as a firmware file (the dictionary scanner, the vector table and
 * USB descriptor facts). Every accepted dictionary is queried. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "protocols/klipper/msgproto.h"
#include "station/core/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void use(const st_klp_dict *d)
{
    uint32_t br;
    (void)st_klp_dict_transport(d, &br);
    (void)st_klp_dict_version(d);
    (void)st_klp_dict_config_int(d, "CLOCK_FREQ", 0);
    (void)st_klp_dict_enum_text(d, "static_string_id", 2);
    const st_klp_msg *m = st_klp_dict_command(d, "identify");
    if (!m || m->id != 1)
        abort(); /* the fixed id is always there */
    uint8_t out[64];
    (void)st_klp_msg_encode_text(d, "identify offset=0 count=40", out, sizeof out, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_klp_dict *d = NULL;
    if (st_klp_dict_parse((const char *)data, size, &d, NULL) == 0) {
        use(d);
        st_klp_dict_free(d);
    }
    size_t used;
    if (st_klp_dict_from_zlib(data, size, &used, &d, NULL) == 0) {
        if (used > size)
            abort();
        use(d);
        st_klp_dict_free(d);
    }
    st_image_facts f; /* the other reader of image files' bytes */
    st_image_facts_of(data, size, st_mcu_find("stm32g431xx"), &f);
    if (f.link_known && (f.link_addr & 0x7FF))
        abort(); /* a link address is page-aligned */
    size_t off, zl;
    if (size < 4096 && st_klp_image_dict(data, size, &off, &zl, &d, NULL) == 0) {
        if (off + zl > size)
            abort();
        use(d);
        st_klp_dict_free(d);
    }
    return 0;
}
