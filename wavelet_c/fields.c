/*
 * fields.c -- bulk assembly of fixed-width words from separately stored bit
 * fields (see the field kernels section of wavelet.h).
 *
 * Used to rebuild IEEE-like floats from an entropy-coded exponent stream
 * (codes decoded from a wavelet tree, mapped through a table) and raw
 * sign+mantissa bits stored as byte planes plus a bit-packed remainder. Integer
 * operations only: the result is bit-exact whatever the values (NaN payloads,
 * infinities, -0.0, subnormals).
 */
#include <string.h>

#include "wavelet.h"

/* bits [p, p + w) of a little-endian bit-packed byte array (w <= 8) */
static inline unsigned get_bits(const uint8_t *a, uint64_t p, unsigned w) {
    uint64_t byte = p >> 3;
    unsigned sh = (unsigned)(p & 7);
    unsigned v = a[byte] >> sh;
    if (sh + w > 8)
        v |= (unsigned)a[byte + 1] << (8 - sh);
    return v & ((1u << w) - 1);
}

#define WV_FM_LOOP(OUT_T, CODE_T)                                                                  \
    do {                                                                                           \
        const CODE_T *cd = (const CODE_T *)codes;                                                  \
        OUT_T *o = (OUT_T *)out;                                                                   \
        for (uint64_t i0 = 0; i0 < n; i0 += 4096) {                                                \
            uint64_t i1 = n - i0 < 4096 ? n : i0 + 4096;                                           \
            unsigned bad = 0;                                                                      \
            for (uint64_t i = i0; i < i1; i++)                                                     \
                bad |= (unsigned)(cd[i] >= ntable);                                                \
            if (bad)                                                                               \
                return WV_ECORRUPT;                                                                \
            for (uint64_t i = i0; i < i1; i++) {                                                   \
                uint64_t raw = 0;                                                                  \
                for (unsigned p = 0; p < nplanes; p++)                                             \
                    raw |= (uint64_t)planes[p * n + i] << (8 * p);                                 \
                if (rem)                                                                           \
                    raw |= (uint64_t)get_bits(top, i * rem, rem) << (8 * nplanes);                 \
                uint64_t v = (raw & mmask) | ((raw >> mant_bits) << (wbits - 1)) |                 \
                             ((uint64_t)table[cd[i]] << mant_bits);                                \
                o[i] = (OUT_T)v;                                                                   \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* Specialised fast paths for the common formats (the compiler unrolls and
 * vectorises these): fp32 (3 planes), bf16 (1 plane). */
static int merge_fp32_u8(const uint8_t *restrict cd, const uint16_t *table, uint64_t ntable,
                         const uint8_t *restrict planes, uint64_t n, uint32_t *restrict o) {
    const uint8_t *restrict p0 = planes, *restrict p1 = planes + n, *restrict p2 = planes + 2 * n;
    uint32_t tab[256];
    for (unsigned c = 0; c < 256; c++)
        tab[c] = c < ntable ? (uint32_t)table[c] << 23 : 0;
    for (uint64_t i0 = 0; i0 < n; i0 += 4096) {
        uint64_t i1 = n - i0 < 4096 ? n : i0 + 4096;
        unsigned bad = 0;
        /* pass 1 (scalar table lookups): exponents in place, codes checked */
        for (uint64_t i = i0; i < i1; i++) {
            bad |= (unsigned)(cd[i] >= ntable);
            o[i] = tab[cd[i]];
        }
        if (bad)
            return WV_ECORRUPT;
        /* pass 2 (vectorisable, byte widening): sign and mantissa from the planes */
        for (uint64_t i = i0; i < i1; i++) {
            uint32_t b2 = p2[i];
            o[i] |= (uint32_t)p0[i] | (uint32_t)p1[i] << 8 | (b2 & 0x7Fu) << 16 | (b2 >> 7) << 31;
        }
    }
    return WV_OK;
}

static int merge_bf16_u8(const uint8_t *restrict cd, const uint16_t *table, uint64_t ntable,
                         const uint8_t *restrict p0, uint64_t n, uint16_t *restrict o) {
    uint16_t tab[256];
    for (unsigned c = 0; c < 256; c++)
        tab[c] = c < ntable ? (uint16_t)(table[c] << 7) : 0;
    for (uint64_t i0 = 0; i0 < n; i0 += 4096) {
        uint64_t i1 = n - i0 < 4096 ? n : i0 + 4096;
        unsigned bad = 0;
        for (uint64_t i = i0; i < i1; i++)
            bad |= (unsigned)(cd[i] >= ntable);
        if (bad)
            return WV_ECORRUPT;
        for (uint64_t i = i0; i < i1; i++) {
            unsigned raw = p0[i];
            o[i] = (uint16_t)((raw & 0x7Fu) | (raw >> 7) << 15 | tab[cd[i]]);
        }
    }
    return WV_OK;
}

int wv_fields_merge_float(const void *codes, uint32_t code_width, uint64_t n,
                          const uint16_t *table, uint64_t ntable, uint32_t exp_bits,
                          uint32_t mant_bits, const uint8_t *planes, uint64_t nplanes_bytes,
                          const uint8_t *top, uint64_t top_bytes, void *out, uint32_t out_width) {
    uint32_t wbits = 8 * out_width;
    if ((out_width != 2 && out_width != 4 && out_width != 8) || (code_width != 1 && code_width != 2))
        return WV_EINVAL;
    if (exp_bits == 0 || mant_bits == 0 || 1 + exp_bits + mant_bits != wbits)
        return WV_EINVAL;
    if (n == 0)
        return WV_OK;
    if (!codes || !table || !planes || !out || ntable == 0 || ntable > (UINT64_C(1) << 16))
        return WV_EINVAL;
    unsigned nplanes = (mant_bits + 1) / 8, rem = (mant_bits + 1) % 8;
    if (nplanes_bytes != nplanes * n)
        return WV_EINVAL;
    if (rem && (!top || top_bytes != (n * rem + 7) / 8))
        return WV_EINVAL;
    for (uint64_t c = 0; c < ntable; c++)
        if (table[c] >> exp_bits)
            return WV_ECORRUPT;
    if (code_width == 1 && out_width == 4 && mant_bits == 23)
        return merge_fp32_u8((const uint8_t *)codes, table, ntable, planes, n, (uint32_t *)out);
    if (code_width == 1 && out_width == 2 && mant_bits == 7)
        return merge_bf16_u8((const uint8_t *)codes, table, ntable, planes, n, (uint16_t *)out);
    uint64_t mmask = (UINT64_C(1) << mant_bits) - 1;
    if (out_width == 2) {
        if (code_width == 1)
            WV_FM_LOOP(uint16_t, uint8_t);
        else
            WV_FM_LOOP(uint16_t, uint16_t);
    } else if (out_width == 4) {
        if (code_width == 1)
            WV_FM_LOOP(uint32_t, uint8_t);
        else
            WV_FM_LOOP(uint32_t, uint16_t);
    } else {
        if (code_width == 1)
            WV_FM_LOOP(uint64_t, uint8_t);
        else
            WV_FM_LOOP(uint64_t, uint16_t);
    }
    return WV_OK;
}
