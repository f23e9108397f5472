/* Bounded run of a fuzz target without libFuzzer: the seed files given on the command line,
 * then a fixed number of mutations of them from a fixed PRNG seed (a failure repeats).
 * ctest runs it in every build (ASan+UBSan in the sanitizer build). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_LEN 4096

static uint32_t rng = 0xA3155u;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s ROUNDS SEED...\n", argv[0]);
        return 2;
    }
    long rounds = strtol(argv[1], NULL, 10);
    static uint8_t seed[MAX_LEN], b[MAX_LEN];
    for (int s = 2; s < argc; s++) {
        FILE *f = fopen(argv[s], "rb");
        if (!f) {
            perror(argv[s]);
            return 1;
        }
        size_t n = fread(seed, 1, sizeof seed, f);
        fclose(f);
        LLVMFuzzerTestOneInput(seed, n);
        for (long r = 0; r < rounds; r++) {
            size_t m = n;
            memcpy(b, seed, n);
            for (unsigned k = 1 + rnd() % 4; k--;) {
                switch (rnd() % 4) {
                case 0: if (m) b[rnd() % m] ^= (uint8_t)(1u << (rnd() % 8)); break;
                case 1: if (m) b[rnd() % m] = (uint8_t)rnd(); break;
                case 2: if (m) m = rnd() % m; break;
                default:
                    if (m < MAX_LEN) {
                        size_t at = m ? rnd() % (m + 1) : 0;
                        memmove(b + at + 1, b + at, m - at);
                        b[at] = (uint8_t)rnd();
                        m++;
                    }
                }
            }
            LLVMFuzzerTestOneInput(b, m);
        }
    }
    return 0;
}
