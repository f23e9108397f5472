/* Bounded run of LLVMFuzzerTestOneInput (fuzz_report.c) for ctest: the example report with
 * random edits (YAML punctuation, anchors, aliases, nesting, cuts). Fixed seed and count. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t rnd(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

int main(void)
{
    FILE *f = fopen(STATION_SOURCE_DIR "/reports/example-report.yaml", "rb");
    if (!f)
        return 1;
    static char orig[65536];
    size_t olen = fread(orig, 1, sizeof orig, f);
    fclose(f);
    static const char alphabet[] = ":-[]{},&*!'\"\n #?|>0x.\\\t";
    static char buf[70000];
    uint32_t seed = 0x5EEDu;
    int runs = 0;
    for (int i = 0; i < 600; i++) {
        size_t n = olen;
        memcpy(buf, orig, n);
        unsigned edits = 1 + rnd(&seed) % 6;
        for (unsigned e = 0; e < edits && n > 1; e++) {
            size_t at = rnd(&seed) % n;
            char c = alphabet[rnd(&seed) % (sizeof alphabet - 1)];
            switch (rnd(&seed) % 5) {
            case 0: buf[at] = c; break;
            case 1: memmove(buf + at + 1, buf + at, n - at); buf[at] = c; n++; break;
            case 2: memmove(buf + at, buf + at + 1, n - at - 1); n--; break;
            case 3: n = at + 1; break;
            default: { /* a deep nest */
                size_t k = rnd(&seed) % 64;
                if (n + k < sizeof buf) {
                    memmove(buf + at + k, buf + at, n - at);
                    memset(buf + at, '[', k);
                    n += k;
                }
            }
            }
        }
        LLVMFuzzerTestOneInput((const uint8_t *)buf, n);
        runs++;
    }
    printf("fuzz smoke: %d inputs\n", runs);
    return 0;
}
