/*
 * C-level tests of fields.c under AddressSanitizer + UBSan (run by
 * tests/test_c_sanitizers.py): random words split into (codes, table, planes,
 * top) and merged back over random sub-ranges and row strides, for every word
 * width and joint field width; gap_positions on random and on mutated (hostile)
 * streams, zero_signs on random words; every buffer allocated at its exact size so any
 * overread is caught.
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

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static uint64_t below(uint64_t n) { return n ? rnd() % n : 0; }

static void merge_case(unsigned width, unsigned exp_bits, uint64_t n) {
    unsigned W = 8 * width, mant = W - 1 - exp_bits, np = (mant + 1) / 8, rem = (mant + 1) % 8;
    uint64_t *words = malloc(8 * (n ? n : 1));
    uint16_t table[1 << 12];
    unsigned ntab = 0;
    uint16_t *codes = malloc(2 * (n ? n : 1));
    uint8_t *planes = malloc(np * n + 1);
    uint64_t top_bytes = (n * rem + 7) / 8;
    uint8_t *top = calloc(top_bytes + 1, 1);
    uint64_t wmask = W == 64 ? ~UINT64_C(0) : (UINT64_C(1) << W) - 1;
    /* up to 128 distinct fields (every byte-table size: 1-8 sub-tables of 16) so codes fit
     * in a byte; random raw bits */
    uint64_t fields[128];
    unsigned nf = 1 + (unsigned)below(128);
    for (unsigned f = 0; f < nf; f++)
        fields[f] = below(UINT64_C(1) << exp_bits);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t fld = fields[below(nf)], raw = rnd() & ((UINT64_C(1) << (mant + 1)) - 1);
        words[i] = (((raw >> mant) << (W - 1)) | (fld << mant) | (raw & ((UINT64_C(1) << mant) - 1))) & wmask;
        unsigned c = 0;
        while (c < ntab && table[c] != fld)
            c++;
        if (c == ntab)
            table[ntab++] = (uint16_t)fld;
        codes[i] = (uint16_t)c;
        for (unsigned p = 0; p < np; p++)
            planes[p * n + i] = (uint8_t)(raw >> (8 * p));
        for (unsigned b = 0; b < rem; b++)
            if ((raw >> (8 * np + b)) & 1)
                top[(i * rem + b) >> 3] |= (uint8_t)(1u << ((i * rem + b) & 7));
    }
    if (!ntab)
        table[ntab++] = 0;
    uint64_t first = below(n + 1), count = below(n - first + 1);
    uint64_t blen = 1 + below(count ? count : 1), gap = below(3);
    uint64_t rows = count ? (count + blen - 1) / blen : 0;
    uint64_t ncodes = rows ? (rows - 1) * (blen + gap) + (count - (rows - 1) * blen) : 1;
    uint16_t *lay = malloc(2 * ncodes);
    for (uint64_t j = 0; j < ncodes; j++)
        lay[j] = 0xFFFF;
    for (uint64_t j = 0; j < count; j++)
        lay[(j / blen) * (blen + gap) + j % blen] = codes[first + j];
    void *out = malloc(width * (count ? count : 1));
    /* 16-bit codes, then the same as 8-bit codes (the SSSE3 byte-table path when ntab <= 64) */
    uint8_t *lay8 = malloc(ncodes);
    for (uint64_t j = 0; j < ncodes; j++)
        lay8[j] = (uint8_t)lay[j];
    const void *lays[2] = {lay, lay8};
    for (unsigned cw = 2; cw >= 1; cw--) {
        memset(out, 0, width * (count ? count : 1));
        int st = wv_fields_merge_float(lays[2 - cw], cw, ncodes, blen, blen + gap, table, ntab,
                                       exp_bits, mant, planes, np * n, top, top_bytes, n, first,
                                       out, width, count);
        CHECK(st == WV_OK);
        for (uint64_t j = 0; j < count; j++) {
            uint64_t v = width == 2 ? ((uint16_t *)out)[j]
                         : width == 4 ? ((uint32_t *)out)[j] : ((uint64_t *)out)[j];
            CHECK(v == words[first + j]);
        }
    }
    if (count) { /* a code outside the table, anywhere in the range */
        uint64_t j = below(count);
        lay8[(j / blen) * (blen + gap) + j % blen] = (uint8_t)(ntab + below(256 - ntab));
        CHECK(wv_fields_merge_float(lay8, 1, ncodes, blen, blen + gap, table, ntab, exp_bits,
                                    mant, planes, np * n, top, top_bytes, n, first, out, width,
                                    count) == WV_ECORRUPT);
    }
    free(lay8);
    /* hostile: a code past the table, a range past the end, a short code buffer */
    if (count) {
        lay[(count - 1) / blen * (blen + gap) + (count - 1) % blen] = (uint16_t)ntab;
        CHECK(wv_fields_merge_float(lay, 2, ncodes, blen, blen + gap, table, ntab, exp_bits, mant,
                                    planes, np * n, top, top_bytes, n, first, out, width,
                                    count) == WV_ECORRUPT);
        CHECK(wv_fields_merge_float(lay, 2, ncodes - 1, blen, blen + gap, table, ntab, exp_bits,
                                    mant, planes, np * n, top, top_bytes, n, first, out, width,
                                    count) == WV_EINVAL);
        CHECK(wv_fields_merge_float(lay, 2, ncodes, blen, blen + gap, table, ntab, exp_bits, mant,
                                    planes, np * n, top, top_bytes, n, n - count + 1, out, width,
                                    count) == WV_EINVAL);
    }
    free(words), free(codes), free(planes), free(top), free(lay), free(out);
}

static void gaps_case(void) {
    uint64_t L = 1 + below(3000), nb = below(5), esc = below(2) ? 1 + below(20) : UINT64_MAX;
    /* without escapes, half the cases are Rice-coded: quotient symbols + rice low bits */
    uint32_t rice = (esc == UINT64_MAX && below(2)) ? (uint32_t)(1 + below(6)) : 0;
    uint64_t maxn = nb * 40 + 1;
    uint64_t *pos_ref = malloc(8 * maxn);
    uint32_t *seq = malloc(4 * (maxn + nb + 1));
    uint64_t table[64];
    unsigned ntab = 64;
    for (unsigned t = 0; t < ntab; t++)
        table[t] = t;
    uint8_t *bits = calloc(maxn * 8 + 8, 1);
    uint64_t nbit = 0, npos = 0, nseq = 0;
    for (uint64_t j = 0; j < nb; j++) {
        uint64_t p = 0;
        int first = 1;
        unsigned cnt = (unsigned)below(40);
        for (unsigned q = 0; q < cnt; q++) {
            uint64_t g = below(esc == UINT64_MAX && !rice ? 40 : 300);
            uint64_t np_ = first ? g : p + 1 + g;
            if (np_ >= L)
                break;
            if (rice) {
                if ((g >> rice) >= ntab)
                    break;
                seq[nseq++] = (uint32_t)(g >> rice);
                for (uint32_t t = 0; t < rice; t++, nbit++)
                    if ((g >> t) & 1)
                        bits[nbit >> 3] |= (uint8_t)(1u << (nbit & 7));
            } else if (esc != UINT64_MAX && g >= esc) {
                uint64_t v = g - esc + 1, b = 63 - (uint64_t)__builtin_clzll(v);
                if (esc + b >= ntab)
                    break;
                seq[nseq++] = (uint32_t)(esc + b);
                for (uint64_t t = 0; t < b; t++, nbit++)
                    if (((v - (UINT64_C(1) << b)) >> t) & 1)
                        bits[nbit >> 3] |= (uint8_t)(1u << (nbit & 7));
            } else {
                if (g >= ntab)
                    break;
                seq[nseq++] = (uint32_t)g;
            }
            p = np_;
            first = 0;
            pos_ref[npos++] = j * L + p;
        }
        seq[nseq++] = 100; /* delimiter */
    }
    uint64_t eb = (nbit + 7) / 8;
    uint8_t *extra = malloc(eb ? eb : 1);
    memcpy(extra, bits, eb);
    int64_t *pos = malloc(8 * (npos ? npos : 1));
    int st = wv_fields_gap_positions(seq, 4, nseq, 100, table, ntab, esc, rice, extra, eb, L, nb,
                                     pos, npos);
    CHECK(st == WV_OK);
    for (uint64_t i = 0; i < npos; i++)
        CHECK((uint64_t)pos[i] == pos_ref[i]);
    /* mutate one entry at random: must be rejected or decode in range, never overread */
    for (int m = 0; m < 20 && nseq; m++) {
        uint32_t *s2 = malloc(4 * nseq);
        memcpy(s2, seq, 4 * nseq);
        s2[below(nseq)] = (uint32_t)below(ntab + 40);
        st = wv_fields_gap_positions(s2, 4, nseq, 100, table, ntab, esc, rice, extra, eb, L, nb,
                                     pos, npos);
        if (st == WV_OK)
            for (uint64_t i = 0; i < npos; i++)
                CHECK(pos[i] >= 0 && (uint64_t)pos[i] < L * nb);
        free(s2);
    }
    free(pos_ref), free(seq), free(bits), free(extra), free(pos);
}

static void lookup_case(int it_small) {
    uint64_t count = below(5000), blen = 1 + below(count ? count : 1), gap = below(3);
    uint64_t ntab = 1 + below(it_small ? 64 : 300), rows = count ? (count + blen - 1) / blen : 0;
    uint64_t ncodes = rows ? (rows - 1) * (blen + gap) + (count - (rows - 1) * blen) : 1;
    uint32_t *table = malloc(4 * ntab), *out = malloc(4 * (count ? count : 1));
    uint16_t *codes = malloc(2 * ncodes), *ref = malloc(2 * (count ? count : 1));
    for (uint64_t t = 0; t < ntab; t++)
        table[t] = (uint32_t)rnd();
    for (uint64_t j = 0; j < ncodes; j++)
        codes[j] = 0xFFFF;
    for (uint64_t j = 0; j < count; j++) {
        ref[j] = (uint16_t)below(ntab);
        codes[(j / blen) * (blen + gap) + j % blen] = ref[j];
    }
    CHECK(wv_fields_lookup(codes, 2, ncodes, blen, blen + gap, table, ntab, 4, out, count) ==
          WV_OK);
    for (uint64_t j = 0; j < count; j++)
        CHECK(out[j] == table[ref[j]]);
    if (ntab <= 64) { /* 8-bit codes: the SSSE3 byte-table path, every output width */
        uint8_t *c8 = malloc(ncodes);
        for (uint64_t j = 0; j < ncodes; j++)
            c8[j] = (uint8_t)codes[j];
        for (uint32_t w = 1; w <= 4; w *= 2) {
            CHECK(wv_fields_lookup(c8, 1, ncodes, blen, blen + gap, table, ntab, w, out, count) ==
                  WV_OK);
            for (uint64_t j = 0; j < count; j++) {
                uint32_t v = w == 1 ? ((uint8_t *)out)[j] : w == 2 ? ((uint16_t *)out)[j] : out[j];
                /* little-endian: the low bytes of the 32-bit entry, read as a narrower table */
                uint32_t e = w == 1   ? ((uint8_t *)table)[ref[j]]
                             : w == 2 ? ((uint16_t *)table)[ref[j]]
                                      : table[ref[j]];
                CHECK(v == e);
            }
            if (count) {
                uint64_t j = below(count), at = (j / blen) * (blen + gap) + j % blen;
                uint8_t keep = c8[at];
                c8[at] = (uint8_t)(ntab + below(256 - ntab));
                CHECK(wv_fields_lookup(c8, 1, ncodes, blen, blen + gap, table, ntab, w, out,
                                       count) == WV_ECORRUPT);
                c8[at] = keep;
            }
        }
        free(c8);
    }
    if (count) {
        CHECK(wv_fields_lookup(codes, 2, ncodes - 1, blen, blen + gap, table, ntab, 4, out,
                               count) == WV_EINVAL);
        codes[0] = (uint16_t)ntab;
        CHECK(wv_fields_lookup(codes, 2, ncodes, blen, blen + gap, table, ntab, 4, out, count) ==
              WV_ECORRUPT);
    }
    free(table), free(out), free(codes), free(ref);
}

/* zero_signs: random words with zeros, the signs from an exact-size stream; every width;
 * a stream one bit short or long is WV_ECORRUPT and is never read past its end. */
static void zero_signs_case(void) {
    const uint32_t widths[4] = {1, 2, 4, 8};
    uint32_t w = widths[below(4)];
    uint64_t n = below(3) == 0 ? below(8) : below(3000);
    uint64_t nz = 0;
    uint8_t *out = malloc(w * (n ? n : 1)), *ref = malloc(w * (n ? n : 1));
    for (uint64_t j = 0; j < n; j++) {
        uint64_t v = below(4) ? 0 : rnd() | 1; /* 3 in 4 zero, else non-zero */
        memcpy(out + j * w, &v, w);            /* little-endian: the low bytes */
        nz += v == 0;
    }
    uint64_t nbytes = (nz + 7) / 8;
    uint8_t *bits = malloc(nbytes ? nbytes : 1);
    for (uint64_t i = 0; i < nbytes; i++)
        bits[i] = (uint8_t)rnd();
    if (nz % 8)
        bits[nbytes - 1] &= (uint8_t)((1u << (nz % 8)) - 1);
    memcpy(ref, out, w * n);
    uint64_t k = 0;
    for (uint64_t j = 0; j < n; j++) {
        uint64_t v = 0;
        memcpy(&v, ref + j * w, w);
        if (v == 0) {
            v = (uint64_t)((bits[k >> 3] >> (k & 7)) & 1) << (8 * w - 1);
            memcpy(ref + j * w, &v, w);
            k++;
        }
    }
    uint8_t *copy = malloc(w * (n ? n : 1));
    memcpy(copy, out, w * n);
    CHECK(wv_fields_zero_signs(out, n, w, nbytes ? bits : NULL, nz) == WV_OK);
    CHECK(memcmp(out, ref, w * n) == 0);
    if (nz) { /* one bit short: more zeros than signs */
        memcpy(out, copy, w * n);
        CHECK(wv_fields_zero_signs(out, n, w, bits, nz - 1) == WV_ECORRUPT);
    }
    if (nbytes) { /* one bit long: signs left over (within the stream's bytes when possible) */
        memcpy(out, copy, w * n);
        uint64_t more = nz % 8 ? nz + 1 : nz; /* same byte count; else no room to add a bit */
        if (more != nz)
            CHECK(wv_fields_zero_signs(out, n, w, bits, more) == WV_ECORRUPT);
    }
    CHECK(wv_fields_zero_signs(out, n, 3, bits, nz) == WV_EINVAL);
    free(out), free(ref), free(bits), free(copy);
}

int main(void) {
    static const unsigned layouts[][2] = {{2, 5}, {2, 8}, {4, 8}, {8, 11}};
    int maxlv = 0;
    CHECK(wv_isa_max(&maxlv) == WV_OK);
    for (int lv = 0; lv <= maxlv; lv++) { /* portable C, then the SIMD kernels */
        CHECK(wv_isa_set(lv) == WV_OK);
        for (int it = 0; it < 400; it++) {
            unsigned L = (unsigned)below(4);
            unsigned k = (unsigned)below(4);
            merge_case(layouts[L][0], layouts[L][1] + k, below(it % 7 == 0 ? 9000 : 300));
        }
        for (int it = 0; it < 200; it++)
            lookup_case(it & 1);
    }
    for (int it = 0; it < 400; it++)
        gaps_case();
    for (int it = 0; it < 400; it++)
        zero_signs_case();
    if (failures) {
        printf("%d failures\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
