/*
 * Fuzz target: wv_bv_validate must accept only self-consistent bitvectors
 * and never read out of bounds, whatever the arrays hold; queries on an
 * accepted vector must stay in bounds and agree with a naive count.
 *
 * libFuzzer:   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iwavelet_c \
 *                  fuzz/fuzz_bv_validate.c wavelet_c/bitvector.c -o fuzz_bv && ./fuzz_bv
 * Without clang (random inputs, what the test suite runs under ASan+UBSan):
 *   gcc -std=gnu11 -g -O1 -fsanitize=address,undefined -DWV_FUZZ_STANDALONE -Iwavelet_c \
 *       fuzz/fuzz_bv_validate.c wavelet_c/bitvector.c -o fuzz_bv && ./fuzz_bv 20000
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wavelet.h"

static uint64_t take(const uint8_t **p, size_t *left) {
    uint64_t v = 0;
    size_t n = *left < 8 ? *left : 8;
    memcpy(&v, *p, n);
    *p += n;
    *left -= n;
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *p = data;
    size_t left = size;
    uint64_t nbits = take(&p, &left) % 20000;
    uint64_t ones = take(&p, &left) % (nbits + 1);
    uint32_t index = (uint32_t)(ones >> 8 & 1); /* both index kinds */
    uint64_t nw, nb, ns, n1, n0;
    if (wv_bv_layout(nbits, ones, index, &nw, &nb, &ns, &n1, &n0) != WV_OK)
        return 0;
    /* exact-size arrays, so ASan sees any overrun */
    uint64_t *a[5];
    uint64_t len[5] = {nw, nb, ns, n1, n0};
    for (int k = 0; k < 5; k++) {
        a[k] = malloc(len[k] * 8 + 1);
        for (uint64_t i = 0; i < len[k]; i++)
            a[k][i] = take(&p, &left);
    }
    /* half of the time derive a valid index from the bits and then damage it */
    uint64_t real_ones;
    if (size & 1 && wv_bv_count(a[0], nbits, &real_ones) == WV_OK) {
        uint64_t n1b, n0b;
        wv_bv_layout(nbits, real_ones, index, &nw, &nb, &ns, &n1b, &n0b);
        if (n1b == n1 && n0b == n0) {
            wv_bv_t tmp = {a[0], a[1], a[2], a[3], a[4], nbits, real_ones, nw, nb, ns, n1, n0, index};
            if (wv_bv_build(&tmp, a[1], a[2], a[3], a[4]) == WV_OK && left >= 2) {
                int k = 1 + p[0] % 4;
                if (len[k])
                    a[k][p[1] % len[k]] ^= 1ULL << (p[0] % 64);
                ones = real_ones;
            }
        }
    }
    wv_bv_t bv = {a[0], a[1], a[2], a[3], a[4], nbits, ones, nw, nb, ns, n1, n0, index};
    if (wv_bv_validate(&bv) == WV_OK) {
        uint64_t r, pos, c = 0;
        for (uint64_t i = 0; i < nbits; i++)
            c += (a[0][i / 64] >> (i % 64)) & 1;
        if (wv_bv_rank1(&bv, nbits, &r) != WV_OK || r != c || c != ones)
            abort();
        for (uint64_t k = 0; k < ones; k += 1 + ones / 50)
            if (wv_bv_select1(&bv, k, &pos) != WV_OK || pos >= nbits)
                abort();
        for (uint64_t k = 0; k < nbits - ones; k += 1 + (nbits - ones) / 50)
            if (wv_bv_select0(&bv, k, &pos) != WV_OK || pos >= nbits)
                abort();
    }
    for (int k = 0; k < 5; k++)
        free(a[k]);
    return 0;
}

#ifdef WV_FUZZ_STANDALONE
int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 10000;
    uint64_t s = 0x9E3779B97F4A7C15ULL;
    uint8_t *buf = malloc(1 << 16);
    for (long it = 0; it < iters; it++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        size_t size = 16 + s % 4096;
        for (size_t i = 0; i < size; i++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            buf[i] = (uint8_t)s;
        }
        /* small lengths more often so that many inputs are fully populated */
        buf[0] = (uint8_t)(buf[0] % 16 == 0 ? buf[0] : buf[0] % 200);
        buf[1] = 0;
        LLVMFuzzerTestOneInput(buf, size);
    }
    free(buf);
    printf("ok\n");
    return 0;
}
#endif
