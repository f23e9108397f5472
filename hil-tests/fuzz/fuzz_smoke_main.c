/* Bounded fuzzing without libFuzzer: runs a target's LLVMFuzzerTestOneInput on each seed
 * file given on the command line, then on a fixed number of mutations of them (bit flips,
 * byte sets, truncations, insertions, splices) and of random buffers, from a fixed PRNG
 * seed so a failure repeats. ctest runs it in every build (ASan+UBSan in the sanitizer
 * build); the libFuzzer build (-DSTATION_FUZZ=ON with clang) runs the same targets open
 * ended. Exit 0, or the target aborts. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SEEDS 16
#define MAX_LEN 8192
#define ROUNDS 4000 /* mutations per seed: about a second in the sanitizer build */

static uint32_t rng = 0x5eed1234u;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static size_t mutate(uint8_t *b, size_t n, const uint8_t *other, size_t on)
{
    unsigned k = 1 + rnd() % 4;
    while (k--) {
        switch (rnd() % 6) {
        case 0: if (n) b[rnd() % n] ^= (uint8_t)(1u << (rnd() % 8)); break;
        case 1: if (n) b[rnd() % n] = (uint8_t)rnd(); break;
        case 2: if (n) n = rnd() % n; break;
        case 3:
            if (n < MAX_LEN) {
                size_t at = n ? rnd() % (n + 1) : 0;
                memmove(b + at + 1, b + at, n - at);
                b[at] = (uint8_t)(rnd() % 4 == 0 ? 0x7e : rnd());
                n++;
            }
            break;
        case 4:
            if (on && n) {
                size_t at = rnd() % n, from = rnd() % on, len = rnd() % 64;
                if (len > on - from)
                    len = on - from;
                if (at + len > MAX_LEN)
                    len = MAX_LEN - at;
                memcpy(b + at, other + from, len);
                if (at + len > n)
                    n = at + len;
            }
            break;
        default: if (n > 1) { size_t i = rnd() % n, j = rnd() % n; uint8_t t = b[i]; b[i] = b[j]; b[j] = t; } break;
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    static uint8_t seeds[MAX_SEEDS][MAX_LEN];
    size_t lens[MAX_SEEDS];
    int ns = 0;
    for (int i = 1; i < argc && ns < MAX_SEEDS; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            fprintf(stderr, "%s: cannot open\n", argv[i]);
            return 1;
        }
        lens[ns] = fread(seeds[ns], 1, MAX_LEN, f);
        fclose(f);
        ns++;
    }
    static uint8_t buf[MAX_LEN + 1];
    unsigned runs = 0;
    for (int s = 0; s < ns; s++) {
        LLVMFuzzerTestOneInput(seeds[s], lens[s]);
        runs++;
        for (unsigned r = 0; r < ROUNDS; r++) {
            memcpy(buf, seeds[s], lens[s]);
            int o = (int)(rnd() % (unsigned)ns);
            size_t n = mutate(buf, lens[s], seeds[o], lens[o]);
            LLVMFuzzerTestOneInput(buf, n);
            runs++;
        }
    }
    for (unsigned r = 0; r < ROUNDS; r++) {
        size_t n = rnd() % 300;
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)rnd();
        LLVMFuzzerTestOneInput(buf, n);
        runs++;
    }
    printf("%u inputs, no failure\n", runs);
    return 0;
}
