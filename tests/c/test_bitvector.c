/*
 * C-level tests of the bitvector against a naive reference, on both ISA
 * levels, including hostile index arrays (wv_bv_validate must reject them
 * without reading out of bounds). Built and run under AddressSanitizer +
 * UBSan by tests/test_c_sanitizers.py; by hand:
 *
 *   gcc -std=c11 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
 *       -Iwavelet_c tests/c/test_bitvector.c wavelet_c/bitvector.c -o /tmp/tbv && /tmp/tbv
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wavelet.h"

static int failures = 0;
#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);                 \
            failures++;                                                                            \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t xorshift(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

typedef struct {
    wv_bv_t bv;
    uint64_t *words, *blocks, *super, *sel1, *sel0;
} owned_bv;

/* exact-size heap arrays so ASan catches any overrun */
static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

static int make(owned_bv *o, const uint8_t *bits, uint64_t n, uint32_t index) {
    memset(o, 0, sizeof *o);
    o->words = xmalloc(((n + 63) / 64) * 8);
    if (wv_bv_pack_bools(bits, n, o->words) != WV_OK)
        return -1;
    uint64_t ones, nw, nb, ns, n1, n0;
    if (wv_bv_count(o->words, n, &ones) != WV_OK)
        return -1;
    if (wv_bv_layout(n, ones, index, &nw, &nb, &ns, &n1, &n0) != WV_OK)
        return -1;
    o->blocks = xmalloc(nb * 8);
    o->super = xmalloc(ns * 8);
    o->sel1 = xmalloc(n1 * 8);
    o->sel0 = xmalloc(n0 * 8);
    o->bv = (wv_bv_t){o->words, o->blocks, o->super, o->sel1, o->sel0, n, ones, nw, nb, ns, n1, n0, index};
    return wv_bv_build(&o->bv, o->blocks, o->super, o->sel1, o->sel0);
}

static void drop(owned_bv *o) {
    free(o->words);
    free(o->blocks);
    free(o->super);
    free(o->sel1);
    free(o->sel0);
}

static void check_vector(uint64_t n, unsigned density_pct, uint32_t index) {
    uint8_t *bits = xmalloc(n);
    for (uint64_t i = 0; i < n; i++)
        bits[i] = (xorshift() % 100) < density_pct;
    owned_bv o;
    CHECK(make(&o, bits, n, index) == WV_OK);
    CHECK(wv_bv_validate(&o.bv) == WV_OK);
    uint64_t r = 0, z = 0, got;
    uint64_t *q = xmalloc((n + 1) * 8), *out = xmalloc((n + 1) * 8);
    for (uint64_t i = 0; i <= n; i++) {
        CHECK(wv_bv_rank1(&o.bv, i, &got) == WV_OK && got == r);
        q[i] = i;
        if (i < n) {
            int b;
            CHECK(wv_bv_access(&o.bv, i, &b) == WV_OK && b == bits[i]);
            if (bits[i]) {
                CHECK(wv_bv_select1(&o.bv, r, &got) == WV_OK && got == i);
                r++;
            } else {
                CHECK(wv_bv_select0(&o.bv, z, &got) == WV_OK && got == i);
                z++;
            }
        }
    }
    size_t bad;
    CHECK(wv_bv_rank1_batch(&o.bv, q, n + 1, out, &bad) == WV_OK);
    for (uint64_t i = 0, c = 0; i <= n; c += (i < n && bits[i]), i++)
        CHECK(out[i] == c);
    /* batch select (pipelined stages) against the positions */
    for (int one = 0; one < 2; one++) {
        uint64_t cnt = one ? r : z, m = 0;
        for (uint64_t i = 0; i < n; i++)
            if (bits[i] == one)
                q[m++] = i;
        uint64_t *ks = xmalloc((cnt + 1) * 8);
        for (uint64_t k = 0; k < cnt; k++)
            ks[k] = k;
        CHECK((one ? wv_bv_select1_batch : wv_bv_select0_batch)(&o.bv, ks, cnt, out, &bad) == WV_OK);
        free(ks);
        for (uint64_t k = 0; k < cnt; k++)
            CHECK(out[k] == q[k]);
    }
    for (uint64_t i = 0; i <= n; i++)
        q[i] = i;
    CHECK(wv_bv_select1(&o.bv, r, &got) == WV_ERANGE);
    CHECK(wv_bv_select0(&o.bv, z, &got) == WV_ERANGE);
    CHECK(wv_bv_rank1(&o.bv, n + 1, &got) == WV_ERANGE);
    q[0] = n + 1;
    CHECK(wv_bv_rank1_batch(&o.bv, q, 1, out, &bad) == WV_ERANGE && bad == 0);
    CHECK(wv_bv_rank1(NULL, 0, &got) == WV_EINVAL);
    CHECK(wv_bv_rank1(&o.bv, 0, NULL) == WV_EINVAL);

    /* hostile index: random garbage in each index array must be rejected */
    for (int t = 0; t < 20; t++) {
        uint64_t *arrs[4] = {o.blocks, o.super, o.sel1, o.sel0};
        uint64_t lens[4] = {o.bv.nblocks, o.bv.nsuper, o.bv.nsel1, o.bv.nsel0};
        int a = t % 4;
        uint64_t at = xorshift() % lens[a];
        uint64_t saved = arrs[a][at];
        arrs[a][at] ^= 1ULL << (xorshift() % 64);
        CHECK(wv_bv_validate(&o.bv) == WV_ECORRUPT);
        arrs[a][at] = saved;
    }
    /* inconsistent lengths, or the other index kind over these arrays */
    wv_bv_t bad_bv = o.bv;
    bad_bv.index = 1 - index; /* array lengths differ once there is more than one block */
    if (n > WV_BV_BLOCK_BITS)
        CHECK(wv_bv_validate(&bad_bv) != WV_OK);
    bad_bv.index = 7;
    CHECK(wv_bv_validate(&bad_bv) == WV_ECORRUPT);
    bad_bv = o.bv;
    bad_bv.nblocks += 1;
    CHECK(wv_bv_validate(&bad_bv) == WV_ECORRUPT);
    bad_bv = o.bv;
    bad_bv.ones = n + 1;
    CHECK(wv_bv_validate(&bad_bv) != WV_OK);
    CHECK(wv_bv_validate(&o.bv) == WV_OK);
    free(q);
    free(out);
    free(bits);
    drop(&o);
}

int main(void) {
    static const uint64_t lens[] = {0,    1,     63,    64,    65,    511,   512,   513,
                                    2047, 2048,  2049,  4095,  4096,  4097,  10000, 16383,
                                    16384, 16385, 70000, 140000};
    static const unsigned dens[] = {0, 3, 50, 97, 100};
    int maxl;
    wv_isa_max(&maxl);
    for (int level = 0; level <= maxl; level++) {
        if (wv_isa_set(level) != WV_OK)
            return 2;
        for (size_t i = 0; i < sizeof lens / sizeof *lens; i++)
            for (size_t d = 0; d < sizeof dens / sizeof *dens; d++)
                for (uint32_t ix = 0; ix < 2; ix++)
                    check_vector(lens[i], dens[d], ix);
    }
    if (wv_isa_set(99) != WV_EINVAL)
        failures++;
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
