/* Fuzz target: the Klipper block finder and message decoder on bytes from a unit. Feeds
 * the input through st_klp_block_check in chunks the first byte chooses (as a link hands
 * them over) and decodes every block it accepts against a fixed dictionary. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/klipper/msgproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char dict_json[] =
    "{\"version\":\"f\",\"config\":{\"CLOCK_FREQ\":1000},\"commands\":{\"get_uptime\":4},"
    "\"responses\":{\"uptime high=%u clock=%u\":89,\"pong data=%*s\":92,"
    "\"stats count=%u name=%s off=%i small=%hi\":-20}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static st_klp_dict *d;
    if (!d && st_klp_dict_parse(dict_json, sizeof dict_json - 1, &d, NULL) != 0)
        abort();
    if (size == 0)
        return 0;
    size_t chunk = (data[0] % 17) + 1;
    data++;
    size--;
    uint8_t buf[256];
    size_t have = 0, pos = 0;
    bool need_sync = false;
    while (pos < size || have) {
        size_t take = size - pos < chunk ? size - pos : chunk;
        if (take > sizeof buf - have)
            take = sizeof buf - have;
        memcpy(buf + have, data + pos, take);
        have += take;
        pos += take;
        for (;;) {
            st_klp_check c = st_klp_block_check(&need_sync, buf, have);
            if (c.kind == ST_KLP_NEED_MORE)
                break;
            if (c.len == 0 || c.len > have)
                abort(); /* the finder must always make progress within the buffer */
            if (c.kind == ST_KLP_BLOCK) {
                if (c.len < ST_KLP_BLOCK_MIN || c.len > ST_KLP_BLOCK_MAX)
                    abort();
                st_klp_decoded m;
                char txt[512];
                if (st_klp_msg_decode(d, true, st_klp_block_content(buf),
                                      st_klp_block_content_len(buf), &m, NULL) > 0)
                    st_klp_decoded_format(&m, txt, sizeof txt);
            }
            memmove(buf, buf + c.len, have - c.len);
            have -= c.len;
        }
        if (pos >= size && have) {
            /* The stream ended inside a block: drop what is left, as a closed link would. */
            have = 0;
        }
    }
    return 0;
}
