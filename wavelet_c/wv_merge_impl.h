/*
 * wv_merge_impl.h -- bulk decode of wavelet matrices/trees (private).
 * Included twice per translation unit, like wv_bv_impl.h (WV_SFX, WV_TARGET,
 * plus WV_MERGE_SIMD = 1 for the SSSE3 merge kernels).
 *
 * Decoding [l, r) works on the tree of nodes (code prefixes): a top-down pass
 * (wavelet_matrix.c / wavelet_tree.c) lists, level by level, the sub-range
 * [a, b) of every node that holds elements of [l, r) (entries, below); then
 * this bottom-up pass fills the decoded values of each level's entries in a
 * compact buffer: leaves are constant runs, and an internal node's values are
 * the merge of its two children's values under the control of its bits
 * (bit 0: next value of the zero child, bit 1: next of the one child). Every
 * step reads and writes sequentially.
 */
#include "wavelet.h"
#include "wv_bits.h"
#include "wv_merge.h"

/* Fetch 64 bits starting at bit position p (bits past the array are 0). */
WV_INLINE uint64_t WV_SFX(wv_get64)(const uint64_t *w, uint64_t nwords, uint64_t p) {
    uint64_t q = p >> 6;
    unsigned sh = (unsigned)(p & 63);
    uint64_t x = q < nwords ? w[q] >> sh : 0;
    if (sh && q + 1 < nwords)
        x |= w[q + 1] << (64 - sh);
    return x;
}

#if WV_X86 && !defined(WV_MERGE512_DEFINED)
#define WV_MERGE512_DEFINED
/* AVX-512 VBMI2 byte kernels (defined once per translation unit, taken by the level-2
 * variant on CPUs with AVX-512 F/BW/VBMI2, see wv_merge512_ok; level 1 keeps the SSSE3
 * ones, so both are tested on such a CPU). 64 values per step: the zero child's next
 * values expanded into the zero bits' lanes, the one child's into the one bits' lanes
 * (vpexpandb from memory reads exactly popcount(mask) bytes, so nothing is over-read). */
#define WV_T512 __attribute__((target("avx512f,avx512bw,avx512vbmi2,popcnt")))
WV_T512 static void wv_merge8_512(const uint64_t *words, uint64_t nwords, uint64_t pos,
                                  uint64_t cnt, const uint8_t *Z, const uint8_t *O,
                                  uint8_t *out) {
    uint64_t zi = 0, oi = 0, j = 0;
    for (; cnt - j >= 64; j += 64) {
        uint64_t bits = wv_get64_portable(words, nwords, pos + j);
        __m512i v = _mm512_maskz_expandloadu_epi8((__mmask64)~bits, Z + zi);
        v = _mm512_mask_expandloadu_epi8(v, (__mmask64)bits, O + oi);
        _mm512_storeu_si512((void *)(out + j), v);
        unsigned pc = (unsigned)__builtin_popcountll(bits);
        oi += pc;
        zi += 64 - pc;
    }
    if (j < cnt) {
        const uint64_t lm = (UINT64_C(1) << (cnt - j)) - 1;
        uint64_t bits = wv_get64_portable(words, nwords, pos + j) & lm;
        __m512i v = _mm512_maskz_expandloadu_epi8((__mmask64)(~bits & lm), Z + zi);
        v = _mm512_mask_expandloadu_epi8(v, (__mmask64)bits, O + oi);
        _mm512_mask_storeu_epi8((void *)(out + j), (__mmask64)lm, v);
    }
}

/* out[j] = bit(pos + j) ? v1 : v0, one-byte values, 64 per blend */
WV_T512 static void wv_pair_fill8_512(const uint64_t *words, uint64_t nwords, uint64_t pos,
                                      uint64_t cnt, uint8_t v0, uint8_t v1, uint8_t *out) {
    const __m512i a = _mm512_set1_epi8((char)v0), b = _mm512_set1_epi8((char)v1);
    uint64_t j = 0;
    for (; cnt - j >= 64; j += 64) {
        uint64_t bits = wv_get64_portable(words, nwords, pos + j);
        _mm512_storeu_si512((void *)(out + j), _mm512_mask_blend_epi8((__mmask64)bits, a, b));
    }
    if (j < cnt) {
        const uint64_t lm = (UINT64_C(1) << (cnt - j)) - 1;
        uint64_t bits = wv_get64_portable(words, nwords, pos + j);
        _mm512_mask_storeu_epi8((void *)(out + j), (__mmask64)lm,
                                _mm512_mask_blend_epi8((__mmask64)bits, a, b));
    }
}
#undef WV_T512
#endif

/* Merge cnt values into out: bit j of the level (at bit position pos + j)
 * picks the next value of Z (0) or O (1). [lo, hi) bounds the source buffer
 * (over-reads by the SIMD kernels stay inside it). */
#define WV_DEFINE_MERGE_PORTABLE(T, NAME)                                                          \
    WV_TARGET static void WV_SFX(NAME)(const uint64_t *words, uint64_t nwords, uint64_t pos,       \
                                       uint64_t cnt, const T *Z, const T *O, T *out,               \
                                       const T *hi) {                                              \
        uint64_t zi = 0, oi = 0;                                                                   \
        (void)hi;                                                                                  \
        for (uint64_t j = 0; j < cnt; j += 64) {                                                   \
            uint64_t bits = WV_SFX(wv_get64)(words, nwords, pos + j);                              \
            uint64_t m = cnt - j < 64 ? cnt - j : 64;                                              \
            for (uint64_t k = 0; k < m; k++) {                                                     \
                unsigned bt = (unsigned)(bits >> k) & 1;                                           \
                out[j + k] = bt ? O[oi++] : Z[zi++];                                               \
            }                                                                                      \
        }                                                                                          \
    }

WV_DEFINE_MERGE_PORTABLE(uint8_t, wv_merge8_p)
WV_DEFINE_MERGE_PORTABLE(uint16_t, wv_merge16_p)
WV_DEFINE_MERGE_PORTABLE(uint32_t, wv_merge32_p)
WV_DEFINE_MERGE_PORTABLE(uint64_t, wv_merge64_p)

#if WV_MERGE_SIMD
/* 8 values per step: 8 control bits index a shuffle of (8 zeros' next
 * values | 8 ones' next values). */
WV_TARGET static void WV_SFX(wv_merge8_s)(const uint64_t *words, uint64_t nwords, uint64_t pos,
                                          uint64_t cnt, const uint8_t *Z, const uint8_t *O,
                                          uint8_t *out, const uint8_t *hi) {
    uint64_t zi = 0, oi = 0, j = 0;
    /* fast path: whole 64-bit words while both sources have 64 readable values left, so
     * the 8 steps of a word need no bounds checks (each reads at most 8 past its index) */
    while (cnt - j >= 64 && Z + zi + 64 <= hi && O + oi + 64 <= hi) {
        uint64_t bits = WV_SFX(wv_get64)(words, nwords, pos + j);
        for (unsigned k = 0; k < 64; k += 8) {
            unsigned c = (unsigned)(bits >> k) & 0xFF;
            __m128i src = _mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)(Z + zi)),
                                             _mm_loadl_epi64((const __m128i *)(O + oi)));
            __m128i ix = _mm_loadl_epi64((const __m128i *)(wv_merge_tab8 + 8 * c));
            _mm_storel_epi64((__m128i *)(out + j + k), _mm_shuffle_epi8(src, ix));
            unsigned pc = (unsigned)__builtin_popcount(c);
            oi += pc;
            zi += 8 - pc;
        }
        j += 64;
    }
    while (j < cnt) {
        uint64_t bits = WV_SFX(wv_get64)(words, nwords, pos + j);
        uint64_t m = cnt - j < 64 ? cnt - j : 64;
        uint64_t k = 0;
        for (; k + 8 <= m; k += 8) {
            unsigned c = (unsigned)(bits >> k) & 0xFF;
            if (WV_UNLIKELY(Z + zi + 8 > hi || O + oi + 8 > hi))
                break;
            __m128i z8 = _mm_loadl_epi64((const __m128i *)(Z + zi));
            __m128i o8 = _mm_loadl_epi64((const __m128i *)(O + oi));
            __m128i src = _mm_unpacklo_epi64(z8, o8);
            __m128i ix = _mm_loadl_epi64((const __m128i *)(wv_merge_tab8 + 8 * c));
            _mm_storel_epi64((__m128i *)(out + j + k), _mm_shuffle_epi8(src, ix));
            unsigned pc = (unsigned)__builtin_popcount(c);
            oi += pc;
            zi += 8 - pc;
        }
        for (; k < m; k++) {
            unsigned bt = (unsigned)(bits >> k) & 1;
            out[j + k] = bt ? O[oi++] : Z[zi++];
        }
        j += m;
    }
}

/* 8 uint16 values per step: two byte shuffles (zero lanes from Z, one lanes
 * from O) or-ed together. */
WV_TARGET static void WV_SFX(wv_merge16_s)(const uint64_t *words, uint64_t nwords, uint64_t pos,
                                           uint64_t cnt, const uint16_t *Z, const uint16_t *O,
                                           uint16_t *out, const uint16_t *hi) {
    uint64_t zi = 0, oi = 0, j = 0;
    while (j < cnt) {
        uint64_t bits = WV_SFX(wv_get64)(words, nwords, pos + j);
        uint64_t m = cnt - j < 64 ? cnt - j : 64;
        uint64_t k = 0;
        for (; k + 8 <= m; k += 8) {
            unsigned c = (unsigned)(bits >> k) & 0xFF;
            if (WV_UNLIKELY(Z + zi + 8 > hi || O + oi + 8 > hi))
                break;
            __m128i z = _mm_loadu_si128((const __m128i *)(Z + zi));
            __m128i o = _mm_loadu_si128((const __m128i *)(O + oi));
            __m128i iz = _mm_loadu_si128((const __m128i *)(wv_merge_tab16z + 16 * c));
            __m128i io = _mm_loadu_si128((const __m128i *)(wv_merge_tab16o + 16 * c));
            __m128i v = _mm_or_si128(_mm_shuffle_epi8(z, iz), _mm_shuffle_epi8(o, io));
            _mm_storeu_si128((__m128i *)(out + j + k), v);
            unsigned pc = (unsigned)__builtin_popcount(c);
            oi += pc;
            zi += 8 - pc;
        }
        for (; k < m; k++) {
            unsigned bt = (unsigned)(bits >> k) & 1;
            out[j + k] = bt ? O[oi++] : Z[zi++];
        }
        j += m;
    }
}

/* 4 uint32 values per step, same scheme with 4-bit controls. */
WV_TARGET static void WV_SFX(wv_merge32_s)(const uint64_t *words, uint64_t nwords, uint64_t pos,
                                           uint64_t cnt, const uint32_t *Z, const uint32_t *O,
                                           uint32_t *out, const uint32_t *hi) {
    uint64_t zi = 0, oi = 0, j = 0;
    while (j < cnt) {
        uint64_t bits = WV_SFX(wv_get64)(words, nwords, pos + j);
        uint64_t m = cnt - j < 64 ? cnt - j : 64;
        uint64_t k = 0;
        for (; k + 4 <= m; k += 4) {
            unsigned c = (unsigned)(bits >> k) & 0xF;
            if (WV_UNLIKELY(Z + zi + 4 > hi || O + oi + 4 > hi))
                break;
            __m128i z = _mm_loadu_si128((const __m128i *)(Z + zi));
            __m128i o = _mm_loadu_si128((const __m128i *)(O + oi));
            __m128i iz = _mm_loadu_si128((const __m128i *)(wv_merge_tab32z + 16 * c));
            __m128i io = _mm_loadu_si128((const __m128i *)(wv_merge_tab32o + 16 * c));
            __m128i v = _mm_or_si128(_mm_shuffle_epi8(z, iz), _mm_shuffle_epi8(o, io));
            _mm_storeu_si128((__m128i *)(out + j + k), v);
            unsigned pc = (unsigned)__builtin_popcount(c);
            oi += pc;
            zi += 4 - pc;
        }
        for (; k < m; k++) {
            unsigned bt = (unsigned)(bits >> k) & 1;
            out[j + k] = bt ? O[oi++] : Z[zi++];
        }
        j += m;
    }
}
#define WV_M8 WV_SFX(wv_merge8_s)
#define WV_M16 WV_SFX(wv_merge16_s)
#define WV_M32 WV_SFX(wv_merge32_s)
#else
#define WV_M8 WV_SFX(wv_merge8_p)
#define WV_M16 WV_SFX(wv_merge16_p)
#define WV_M32 WV_SFX(wv_merge32_p)
#endif

/* out[j] = bit(pos + j) ? v1 : v0 for j < cnt (out_width bytes per value): an internal
 * node whose children are constant runs. 8 one-byte values per table lookup. */
WV_TARGET static void WV_SFX(wv_pair_fill)(const uint64_t *words, uint64_t nwords, uint64_t pos,
                                           uint64_t cnt, uint64_t v0, uint64_t v1, void *outp,
                                           uint32_t width) {
    uint64_t j = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (width == 1) {
        uint8_t *out = (uint8_t *)outp;
        const uint64_t b0 = (uint64_t)(uint8_t)v0 * UINT64_C(0x0101010101010101);
        const uint64_t dx = b0 ^ ((uint64_t)(uint8_t)v1 * UINT64_C(0x0101010101010101));
        for (; cnt - j >= 64; j += 64) {
            uint64_t bits = WV_SFX(wv_get64)(words, nwords, pos + j);
            for (unsigned k = 0; k < 8; k++) {
                uint64_t w = b0 ^ (dx & wv_expand8[(bits >> (8 * k)) & 0xFF]);
                memcpy(out + j + 8 * k, &w, 8);
            }
        }
    }
#endif
    for (; j < cnt; j += 64) {
        uint64_t bits = WV_SFX(wv_get64)(words, nwords, pos + j);
        uint64_t m = cnt - j < 64 ? cnt - j : 64;
        for (uint64_t k = 0; k < m; k++) {
            uint64_t v = ((bits >> k) & 1) ? v1 : v0;
            switch (width) {
            case 1: ((uint8_t *)outp)[j + k] = (uint8_t)v; break;
            case 2: ((uint16_t *)outp)[j + k] = (uint16_t)v; break;
            case 4: ((uint32_t *)outp)[j + k] = (uint32_t)v; break;
            default: ((uint64_t *)outp)[j + k] = v; break;
            }
        }
    }
}

/* Bottom-up pass. ent: entries of all levels, level d at [lstart[d],
 * lstart[d+1]); lbit[d] = bit offset of level d in the bitvector. Level d's
 * values go to buf[(d & 1) ^ par]: level 0 lands in buf[par]. */
WV_TARGET static void WV_SFX(wv_decode_up)(const wv_bv_t *bv, const wv_xent_t *ent,
                                           const uint64_t *lstart, unsigned depth,
                                           const uint64_t *lbit, void *buf0, void *buf1,
                                           uint64_t len, uint32_t width) {
    void *bufs[2] = {buf0, buf1};
#if WV_X86 && defined(WV_MERGE_512) && WV_MERGE_512
    const int k512 = width == 1 && wv_merge512_ok();
#else
    const int k512 = 0;
#endif
    for (int d = (int)depth; d >= 0; d--) {
        void *dst = bufs[d & 1];
        const void *src = bufs[(d + 1) & 1];
        for (uint64_t t = lstart[d]; t < lstart[d + 1]; t++) {
            const wv_xent_t *x = ent + t;
            uint64_t m = x->b - x->a;
            if (x->z == WV_XENT_LEAF) {
                if (x->co) /* its parent fills from constants */
                    continue;
                uint64_t v = x->leaf;
                switch (width) {
                case 1: memset((uint8_t *)dst + x->o, (int)(uint8_t)v, m); break;
                case 2: { uint16_t *p = (uint16_t *)dst + x->o; for (uint64_t k = 0; k < m; k++) p[k] = (uint16_t)v; } break;
                case 4: { uint32_t *p = (uint32_t *)dst + x->o; for (uint64_t k = 0; k < m; k++) p[k] = (uint32_t)v; } break;
                default: { uint64_t *p = (uint64_t *)dst + x->o; for (uint64_t k = 0; k < m; k++) p[k] = v; } break;
                }
                continue;
            }
            uint64_t pos = lbit[d] + x->a, z = x->z;
            if (x->leaf == WV_XENT_PAIR) {
#if WV_X86
                if (k512) {
                    wv_pair_fill8_512(bv->words, bv->nwords, pos, m, (uint8_t)x->s,
                                      (uint8_t)x->e, (uint8_t *)dst + x->o);
                    continue;
                }
#endif
                WV_SFX(wv_pair_fill)(bv->words, bv->nwords, pos, m, x->s, x->e,
                                     (uint8_t *)dst + x->o * width, width);
                continue;
            }
            switch (width) {
            case 1: {
                const uint8_t *s = (const uint8_t *)src;
#if WV_X86
                if (k512) {
                    wv_merge8_512(bv->words, bv->nwords, pos, m, s + x->co, s + x->co + z,
                                  (uint8_t *)dst + x->o);
                    break;
                }
#endif
                WV_M8(bv->words, bv->nwords, pos, m, s + x->co, s + x->co + z,
                              (uint8_t *)dst + x->o, s + len);
            } break;
            case 2: {
                const uint16_t *s = (const uint16_t *)src;
                WV_M16(bv->words, bv->nwords, pos, m, s + x->co, s + x->co + z,
                               (uint16_t *)dst + x->o, s + len);
            } break;
            case 4: {
                const uint32_t *s = (const uint32_t *)src;
                WV_M32(bv->words, bv->nwords, pos, m, s + x->co, s + x->co + z,
                               (uint32_t *)dst + x->o, s + len);
            } break;
            default: {
                const uint64_t *s = (const uint64_t *)src;
                WV_SFX(wv_merge64_p)(bv->words, bv->nwords, pos, m, s + x->co, s + x->co + z,
                                     (uint64_t *)dst + x->o, s + len);
            } break;
            }
        }
    }
}
#undef WV_M8
#undef WV_M16
#undef WV_M32
#undef WV_DEFINE_MERGE_PORTABLE
