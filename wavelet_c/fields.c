/*
 * fields.c -- bulk assembly of fixed-width words from separately stored bit
 * fields (see the field kernels section of wavelet.h).
 *
 * Used to rebuild IEEE-like floats from an entropy-coded "exponent" stream
 * (codes decoded from a wavelet tree, mapped through a table; the field may
 * also carry the top mantissa bits) and raw sign+mantissa bits stored as byte
 * planes plus a bit-packed remainder. Integer operations only: the result is
 * bit-exact whatever the values (NaN payloads, infinities, -0.0, subnormals).
 *
 * Work is done in chunks of WV_FM_CHUNK elements inside one row of codes, so
 * the codes, the expanded top bits and the output chunk stay in L1 while the
 * planes stream through. The per-element loops have a fixed plane count (one
 * loop per count) so the compiler unrolls and vectorises them.
 */
#include <string.h>

#include "wavelet.h"

#define WV_FM_CHUNK 2048u

/* bits [p, p + w) of a little-endian bit-packed byte array (w <= 8) */
static inline unsigned get_bits(const uint8_t *a, uint64_t p, unsigned w) {
    uint64_t byte = p >> 3;
    unsigned sh = (unsigned)(p & 7);
    unsigned v = a[byte] >> sh;
    if (sh + w > 8)
        v |= (unsigned)a[byte + 1] << (8 - sh);
    return v & ((1u << w) - 1);
}

/* tv[0..cnt) = the rem-bit fields of elements i0..i0+cnt of top. Eight
 * elements of rem bits fill exactly rem bytes, so aligned groups are read as
 * one little-endian word. */
static void expand_top(const uint8_t *top, unsigned rem, uint64_t i0, uint64_t cnt, uint8_t *tv) {
    uint64_t i = i0, e = i0 + cnt;
    const uint64_t mask = (UINT64_C(1) << rem) - 1;
    for (; i < e && (i & 7); i++)
        *tv++ = (uint8_t)get_bits(top, i * rem, rem);
    for (; e - i >= 8; i += 8, tv += 8) {
        const uint8_t *b = top + (i >> 3) * rem;
        uint64_t w = 0;
        for (unsigned k = 0; k < rem; k++)
            w |= (uint64_t)b[k] << (8 * k);
        for (unsigned j = 0; j < 8; j++)
            tv[j] = (uint8_t)((w >> (j * rem)) & mask);
    }
    for (; i < e; i++)
        *tv++ = (uint8_t)get_bits(top, i * rem, rem);
}

/* One chunk: o[j] for j < cnt, element index i0 + j, codes c[j]. */
#define WV_FM_BODY(OUT_T, RAWEXPR)                                                                 \
    for (uint64_t j = 0; j < cnt; j++) {                                                           \
        OUT_T r = (OUT_T)(RAWEXPR);                                                                \
        o[j] = (OUT_T)(ex[j] | (r & mmask) | (OUT_T)((r >> mant_bits) << (wbits - 1)));           \
    }

#define WV_FM_PLANES(OUT_T, NP, TOPEXPR)                                                          \
    switch (NP) {                                                                                  \
    case 0:                                                                                        \
        WV_FM_BODY(OUT_T, TOPEXPR)                                                                 \
        break;                                                                                     \
    case 1:                                                                                        \
        WV_FM_BODY(OUT_T, (OUT_T)p0[j] | TOPEXPR)                                                  \
        break;                                                                                     \
    case 2:                                                                                        \
        WV_FM_BODY(OUT_T, (OUT_T)p0[j] | (OUT_T)((OUT_T)p0[j + n] << 8) | TOPEXPR)                 \
        break;                                                                                     \
    case 3:                                                                                        \
        WV_FM_BODY(OUT_T, (OUT_T)p0[j] | (OUT_T)((OUT_T)p0[j + n] << 8) |                          \
                              (OUT_T)((OUT_T)p0[j + 2 * n] << 16) | TOPEXPR)                       \
        break;                                                                                     \
    default:                                                                                       \
        for (uint64_t j = 0; j < cnt; j++) {                                                       \
            uint64_t r = (uint64_t)tv[j] << sh;                                                    \
            for (unsigned p = 0; p < NP; p++)                                                      \
                r |= (uint64_t)p0[j + (uint64_t)p * n] << (8 * p);                                 \
            o[j] = (OUT_T)(ex[j] | ((OUT_T)r & mmask) |                                            \
                           (OUT_T)((OUT_T)(r >> mant_bits) << (wbits - 1)));                       \
        }                                                                                          \
    }

/* One function per (word, code) width. For 8-bit codes the table is widened
 * and shifted once into a 256-entry local copy; codes >= ntable are detected
 * in the same pass as the lookups. */
#define WV_FM_DEFINE(NAME, OUT_T, CODE_T)                                                          \
    static int NAME(const CODE_T *restrict codes, uint64_t blen, uint64_t bstride,                \
                    const uint16_t *restrict table, uint64_t ntable, unsigned mant_bits,           \
                    const uint8_t *restrict planes, unsigned np, const uint8_t *restrict top,     \
                    unsigned rem, OUT_T *restrict out, uint64_t n, uint64_t first,                 \
                    uint64_t count) {                                                              \
        const unsigned wbits = 8u * (unsigned)sizeof(OUT_T);                                       \
        const OUT_T mmask = (OUT_T)(((OUT_T)1 << mant_bits) - 1);                                  \
        uint8_t tv[WV_FM_CHUNK];                                                                   \
        OUT_T ex[WV_FM_CHUNK];                                                                     \
        OUT_T tab8[256];                                                                           \
        if (sizeof(CODE_T) == 1)                                                                   \
            for (unsigned k = 0; k < 256; k++)                                                     \
                tab8[k] = k < ntable ? (OUT_T)((OUT_T)table[k] << mant_bits) : 0;                  \
        for (uint64_t r0 = 0, row = 0; r0 < count; r0 += blen, row++) {                            \
            const CODE_T *crow = codes + row * bstride;                                            \
            uint64_t rlen = count - r0 < blen ? count - r0 : blen;                                 \
            for (uint64_t a = 0; a < rlen; a += WV_FM_CHUNK) {                                     \
                const uint64_t cnt = rlen - a < WV_FM_CHUNK ? rlen - a : WV_FM_CHUNK;              \
                const uint64_t i0 = first + r0 + a;                                                \
                const CODE_T *restrict c = crow + a;                                               \
                unsigned bad = 0;                                                                  \
                if (sizeof(CODE_T) == 1) {                                                         \
                    for (uint64_t j = 0; j < cnt; j++) {                                           \
                        bad |= (unsigned)(c[j] >= ntable);                                         \
                        ex[j] = tab8[c[j] & 0xFF];                                                 \
                    }                                                                              \
                } else {                                                                           \
                    for (uint64_t j = 0; j < cnt; j++)                                             \
                        bad |= (unsigned)(c[j] >= ntable);                                         \
                    if (!bad)                                                                      \
                        for (uint64_t j = 0; j < cnt; j++)                                         \
                            ex[j] = (OUT_T)((OUT_T)table[c[j]] << mant_bits);                      \
                }                                                                                  \
                if (bad)                                                                           \
                    return WV_ECORRUPT;                                                            \
                const uint8_t *restrict p0 = planes + i0;                                          \
                OUT_T *restrict o = out + (r0 + a);                                                \
                const unsigned sh = 8u * np;                                                       \
                if (rem) {                                                                         \
                    expand_top(top, rem, i0, cnt, tv);                                             \
                    WV_FM_PLANES(OUT_T, np, (OUT_T)((OUT_T)tv[j] << sh))                           \
                } else {                                                                           \
                    if (np > 3)                                                                    \
                        memset(tv, 0, (size_t)cnt);                                                \
                    WV_FM_PLANES(OUT_T, np, (OUT_T)0)                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        return WV_OK;                                                                              \
    }

WV_FM_DEFINE(merge_u16_c8, uint16_t, uint8_t)
WV_FM_DEFINE(merge_u16_c16, uint16_t, uint16_t)
WV_FM_DEFINE(merge_u32_c8, uint32_t, uint8_t)
WV_FM_DEFINE(merge_u32_c16, uint32_t, uint16_t)
WV_FM_DEFINE(merge_u64_c8, uint64_t, uint8_t)
WV_FM_DEFINE(merge_u64_c16, uint64_t, uint16_t)

int wv_fields_merge_float(const void *codes, uint32_t code_width, uint64_t ncodes,
                          uint64_t block_len, uint64_t block_stride, const uint16_t *table,
                          uint64_t ntable, uint32_t exp_bits, uint32_t mant_bits,
                          const uint8_t *planes, uint64_t nplanes_bytes, const uint8_t *top,
                          uint64_t top_bytes, uint64_t n, uint64_t first, void *out,
                          uint32_t out_width, uint64_t count) {
    uint32_t wbits = 8 * out_width;
    if ((out_width != 2 && out_width != 4 && out_width != 8) || (code_width != 1 && code_width != 2))
        return WV_EINVAL;
    if (exp_bits == 0 || exp_bits > 16 || 1 + exp_bits + mant_bits != wbits)
        return WV_EINVAL;
    if (first > n || count > n - first)
        return WV_EINVAL;
    if (count == 0)
        return WV_OK;
    if (!codes || !table || !out || ntable == 0 || ntable > (UINT64_C(1) << 16))
        return WV_EINVAL;
    if (block_len == 0 || block_stride < block_len)
        return WV_EINVAL;
    /* the last element reads codes[(count-1)/blen * bstride + (count-1)%blen];
     * checked without overflow */
    {
        uint64_t last_row = (count - 1) / block_len, last_col = (count - 1) % block_len;
        if (ncodes == 0 || last_col >= ncodes || last_row > (ncodes - 1 - last_col) / block_stride)
            return WV_EINVAL;
    }
    unsigned nplanes = (mant_bits + 1) / 8, rem = (mant_bits + 1) % 8;
    if (n > UINT64_MAX / 8 || (nplanes && !planes) || nplanes_bytes != (uint64_t)nplanes * n)
        return WV_EINVAL;
    if (rem && (!top || top_bytes != (n * rem + 7) / 8))
        return WV_EINVAL;
    for (uint64_t c = 0; c < ntable; c++)
        if (table[c] >> exp_bits)
            return WV_ECORRUPT;
#define WV_FM_CALL(F)                                                                              \
    F(codes, block_len, block_stride, table, ntable, mant_bits, planes, nplanes, top, rem, out, n, \
      first, count)
    switch (out_width * 4 + code_width) {
    case 2 * 4 + 1:
        return WV_FM_CALL(merge_u16_c8);
    case 2 * 4 + 2:
        return WV_FM_CALL(merge_u16_c16);
    case 4 * 4 + 1:
        return WV_FM_CALL(merge_u32_c8);
    case 4 * 4 + 2:
        return WV_FM_CALL(merge_u32_c16);
    case 8 * 4 + 1:
        return WV_FM_CALL(merge_u64_c8);
    default:
        return WV_FM_CALL(merge_u64_c16);
    }
#undef WV_FM_CALL
}

/* ---- gap-coded positions ---------------------------------------------------------------- */
static inline uint64_t load_le64(const uint8_t *p) {
    uint64_t w;
    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

static inline uint64_t code_at(const void *seq, uint32_t w, uint64_t i) {
    if (w == 1)
        return ((const uint8_t *)seq)[i];
    if (w == 2)
        return ((const uint16_t *)seq)[i];
    return ((const uint32_t *)seq)[i];
}

int wv_fields_gap_positions(const void *seq, uint32_t code_width, uint64_t nseq, uint64_t delim,
                            const uint64_t *table, uint64_t ntable, uint64_t esc,
                            const uint8_t *extra, uint64_t extra_bytes, uint64_t block_len,
                            uint64_t nblocks, int64_t *pos, uint64_t npos) {
    if (code_width != 1 && code_width != 2 && code_width != 4)
        return WV_EINVAL;
    if ((nseq && !seq) || (ntable && !table) || (npos && !pos) || (extra_bytes && !extra))
        return WV_EINVAL;
    if (delim < ntable || block_len > (uint64_t)INT64_MAX ||
        (nblocks && block_len > (uint64_t)INT64_MAX / nblocks))
        return WV_EINVAL;
    if (nseq != nblocks + npos)
        return WV_ECORRUPT;
    const uint64_t nbits = extra_bytes > UINT64_MAX / 8 ? UINT64_MAX : extra_bytes * 8;
    uint64_t bitpos = 0, block = 0, k = 0, off = 0;
    int first = 1;
    for (uint64_t i = 0; i < nseq; i++) {
        uint64_t c = code_at(seq, code_width, i);
        if (c == delim) {
            if (block == nblocks)
                return WV_ECORRUPT;
            block++;
            off = 0;
            first = 1;
            continue;
        }
        if (c >= ntable || block == nblocks || k == npos)
            return WV_ECORRUPT;
        uint64_t g = table[c];
        /* escapes without branches on the (random) escape flag: b = 0 for a plain
         * distance, and the bits come from an unaligned 64-bit window when it fits */
        uint64_t is_esc = g >= esc;
        uint64_t b = is_esc ? g - esc : 0;
        if (b > 56 || b > nbits - bitpos)
            return WV_ECORRUPT;
        uint64_t byte = bitpos >> 3, v;
        if (byte + 8 <= extra_bytes) {
            v = (load_le64(extra + byte) >> (bitpos & 7)) & ((UINT64_C(1) << b) - 1);
        } else {
            v = 0;
            for (unsigned got = 0; got < b;) { /* the last bytes: one byte (or its rest) at a time */
                unsigned sh = (unsigned)(bitpos & 7), take = 8 - sh;
                if (take > b - got)
                    take = (unsigned)(b - got);
                v |= (uint64_t)((extra[bitpos >> 3] >> sh) & ((1u << take) - 1)) << got;
                got += take;
                bitpos += take;
            }
            bitpos -= b;
        }
        bitpos += b;
        uint64_t ge = esc + ((UINT64_C(1) << b) - 1) + v;
        if (is_esc && ge < esc) /* wrapped: no such distance */
            return WV_ECORRUPT;
        g = is_esc ? ge : g;
        /* next offset: g after the block start, or g + 1 after the previous one */
        uint64_t step = first ? 0 : 1;
        if (g >= block_len || off + step > block_len - 1 - g)
            return WV_ECORRUPT;
        off += step + g;
        first = 0;
        pos[k++] = (int64_t)(block * block_len + off);
    }
    if (block != nblocks || k != npos || nbits - bitpos >= 8)
        return WV_ECORRUPT;
    return WV_OK;
}

/* ---- dictionary lookup ---------------------------------------------------------------- */
#define WV_LK_DEFINE(NAME, OUT_T, CODE_T)                                                          \
    static int NAME(const CODE_T *restrict codes, uint64_t blen, uint64_t bstride,                \
                    const OUT_T *restrict table, uint64_t ntable, OUT_T *restrict out,             \
                    uint64_t count) {                                                              \
        for (uint64_t r0 = 0, row = 0; r0 < count; r0 += blen, row++) {                            \
            const CODE_T *restrict c = codes + row * bstride;                                      \
            OUT_T *restrict o = out + r0;                                                          \
            uint64_t rlen = count - r0 < blen ? count - r0 : blen;                                 \
            for (uint64_t a = 0; a < rlen; a += WV_FM_CHUNK) {                                     \
                uint64_t cnt = rlen - a < WV_FM_CHUNK ? rlen - a : WV_FM_CHUNK;                    \
                unsigned bad = 0;                                                                  \
                for (uint64_t j = 0; j < cnt; j++)                                                 \
                    bad |= (unsigned)(c[a + j] >= ntable);                                         \
                if (bad)                                                                           \
                    return WV_ECORRUPT;                                                            \
                for (uint64_t j = 0; j < cnt; j++)                                                 \
                    o[a + j] = table[c[a + j]];                                                    \
            }                                                                                      \
        }                                                                                          \
        return WV_OK;                                                                              \
    }

WV_LK_DEFINE(lookup_8_8, uint8_t, uint8_t)
WV_LK_DEFINE(lookup_8_16, uint8_t, uint16_t)
WV_LK_DEFINE(lookup_16_8, uint16_t, uint8_t)
WV_LK_DEFINE(lookup_16_16, uint16_t, uint16_t)
WV_LK_DEFINE(lookup_32_8, uint32_t, uint8_t)
WV_LK_DEFINE(lookup_32_16, uint32_t, uint16_t)
WV_LK_DEFINE(lookup_64_8, uint64_t, uint8_t)
WV_LK_DEFINE(lookup_64_16, uint64_t, uint16_t)

int wv_fields_lookup(const void *codes, uint32_t code_width, uint64_t ncodes, uint64_t block_len,
                     uint64_t block_stride, const void *table, uint64_t ntable, uint32_t width,
                     void *out, uint64_t count) {
    if ((code_width != 1 && code_width != 2) ||
        (width != 1 && width != 2 && width != 4 && width != 8))
        return WV_EINVAL;
    if (count == 0)
        return WV_OK;
    if (!codes || !table || !out || ntable == 0 || block_len == 0 || block_stride < block_len)
        return WV_EINVAL;
    {
        uint64_t last_row = (count - 1) / block_len, last_col = (count - 1) % block_len;
        if (ncodes == 0 || last_col >= ncodes || last_row > (ncodes - 1 - last_col) / block_stride)
            return WV_EINVAL;
    }
#define WV_LK_CALL(F, OT, CT)                                                                      \
    F((const CT *)codes, block_len, block_stride, (const OT *)table, ntable, (OT *)out, count)
    switch (width * 4 + code_width) {
    case 1 * 4 + 1:
        return WV_LK_CALL(lookup_8_8, uint8_t, uint8_t);
    case 1 * 4 + 2:
        return WV_LK_CALL(lookup_8_16, uint8_t, uint16_t);
    case 2 * 4 + 1:
        return WV_LK_CALL(lookup_16_8, uint16_t, uint8_t);
    case 2 * 4 + 2:
        return WV_LK_CALL(lookup_16_16, uint16_t, uint16_t);
    case 4 * 4 + 1:
        return WV_LK_CALL(lookup_32_8, uint32_t, uint8_t);
    case 4 * 4 + 2:
        return WV_LK_CALL(lookup_32_16, uint32_t, uint16_t);
    case 8 * 4 + 1:
        return WV_LK_CALL(lookup_64_8, uint64_t, uint8_t);
    default:
        return WV_LK_CALL(lookup_64_16, uint64_t, uint16_t);
    }
#undef WV_LK_CALL
}
