/* Bounded random-input run of LLVMFuzzerTestOneInput (fuzz_layout.c) for ctest: mutations
 * of real layout strings (byte flips, insertions of grammar characters, cuts) and random
 * bytes. A fixed seed and count keep it reproducible and quick. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t rnd(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

int main(void)
{
    static const char *const seeds[] = {
        "@Internal Flash   /0x08000000/64*02Kg",
        "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg",
        "@Option Bytes  /0x1FFFC000/01*016 g",
        "@Flash /0x08000000/2*16Ka,1*64Kg/0x20000000/8*1Kb",
        "@Device Feature/0xFFFF0000/01*004 g",
    };
    static const char grammar[] = "@/0x*,KMBabcdefg 9\t\0";
    uint32_t seed = 0xD5E1u;
    uint8_t buf[512];
    int runs = 0;
    for (int i = 0; i < 50000; i++) {
        size_t n;
        if (i % 4 == 3) {
            n = rnd(&seed) % 200;
            for (size_t k = 0; k < n; k++)
                buf[k] = (uint8_t)rnd(&seed);
        } else {
            const char *s = seeds[rnd(&seed) % (sizeof seeds / sizeof *seeds)];
            n = strlen(s);
            memcpy(buf, s, n);
            unsigned edits = 1 + rnd(&seed) % 4;
            for (unsigned e = 0; e < edits && n; e++) {
                size_t at = rnd(&seed) % n;
                char c = grammar[rnd(&seed) % (sizeof grammar - 1)];
                switch (rnd(&seed) % 4) {
                case 0: buf[at] = (uint8_t)c; break;
                case 1:
                    if (n < sizeof buf) {
                        memmove(buf + at + 1, buf + at, n - at);
                        buf[at] = (uint8_t)c;
                        n++;
                    }
                    break;
                case 2: memmove(buf + at, buf + at + 1, n - at - 1); n--; break;
                default: n = at; break;
                }
            }
        }
        LLVMFuzzerTestOneInput(buf, n);
        runs++;
    }
    printf("fuzz smoke: %d inputs\n", runs);
    return 0;
}
