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
#include <stdlib.h>
#include <string.h>

#include "wavelet.h"
#include "wv_bits.h"
#include "wv_merge.h"

#define WV_FM_CHUNK 2048u

/* ---- SSSE3 byte-table kernel ------------------------------------------------------------
 * For 8-bit codes and at most 128 table entries, out words are assembled byte by byte, 16
 * elements at a time: byte b of a word is (pshufb lookups of the code in byte b of the
 * table, 16 entries per shuffle) | (raw byte b & mask byte b), plus the sign bit taken from
 * raw bit `sign_bit` into the word's top bit; bytes are then interleaved into words. This
 * replaces a scalar table gather (~0.7 ns per element here) with ~0.1 ns. Used for the
 * float merge (1-3 raw byte planes plus an expanded top-bits byte) and the dictionary
 * lookup (no raw bytes). */
#define WV_BT_MAXSUB 8u /* 128 table entries */
typedef struct wv_bt {
    uint8_t tab[8][WV_BT_MAXSUB][16]; /* tab[b][s][i] = byte b of table entry 16 s + i */
    uint8_t mask[8];                  /* raw byte b is kept under mask[b] */
    uint8_t used[8];                  /* byte b of the table is not all zero */
    unsigned nsub, width;             /* 16-entry sub-tables; bytes per word */
    unsigned sign_bit;                /* raw bit moved to the word's top bit; 0xFF = none */
} wv_bt_t;

/* the kernel applies: 8-bit codes, words of at most 4 bytes, <= 128 entries, SSSE3 level */
static int bt_usable(size_t code_width, size_t out_width, uint64_t ntable) {
    if (code_width != 1 || out_width > 4 || ntable > 16 * WV_BT_MAXSUB)
        return 0;
#if WV_X86
    return wv_merge_simd_ok() && wv_isa_level_internal() >= 1;
#else
    return 0;
#endif
}

/* fills t from entry(i) for i < ntable (entries are words of `width` bytes) */
static void bt_init(wv_bt_t *t, unsigned width, uint64_t ntable, const uint64_t *entries,
                    uint64_t raw_mask, unsigned sign_bit) {
    memset(t, 0, sizeof *t);
    t->width = width;
    t->nsub = (unsigned)((ntable + 15) / 16);
    t->sign_bit = sign_bit;
    for (uint64_t i = 0; i < ntable; i++)
        for (unsigned b = 0; b < width; b++) {
            uint8_t v = (uint8_t)(entries[i] >> (8 * b));
            t->tab[b][i / 16][i % 16] = v;
            t->used[b] |= (uint8_t)(v != 0);
        }
    for (unsigned b = 0; b < width; b++)
        t->mask[b] = (uint8_t)(raw_mask >> (8 * b));
}

#if WV_X86
/* raw[b] (b < nraw) point at 16 consecutive raw bytes per step; returns the elements done
 * (cnt rounded down to 16), or UINT64_MAX if a code >= ntable was seen. */
#define WV_BT_KERNEL(NAME, W, NSUB)                                                                \
    __attribute__((target("ssse3"))) static uint64_t NAME(                                        \
        const wv_bt_t *t, uint64_t ntable, const uint8_t *c, uint64_t cnt,                        \
        const uint8_t *const *raw, unsigned nraw, void *outp) {                                    \
        uint8_t *out = (uint8_t *)outp;                                                            \
        const uint64_t n16 = cnt & ~(uint64_t)15;                                                  \
        __m128i maxv = _mm_setzero_si128();                                                        \
        const __m128i k15 = _mm_set1_epi8(15), k80 = _mm_set1_epi8((char)0x80);                    \
        const unsigned sb = t->sign_bit;                                                           \
        const __m128i sbit = _mm_set1_epi8((char)(1u << (sb & 7)));                                \
        __m128i tab[W][NSUB], msk[W], off[NSUB];                                                   \
        unsigned used[W];                                                                          \
        for (unsigned b = 0; b < (W); b++) {                                                       \
            used[b] = t->used[b];                                                                  \
            msk[b] = _mm_set1_epi8((char)t->mask[b]);                                              \
            for (unsigned s = 0; s < (NSUB); s++)                                                  \
                tab[b][s] = _mm_loadu_si128((const __m128i *)t->tab[b][s]);                        \
        }                                                                                          \
        for (unsigned s = 0; s < (NSUB); s++)                                                      \
            off[s] = _mm_set1_epi8((char)(16 * s));                                                \
        for (uint64_t j = 0; j < n16; j += 16) {                                                   \
            __m128i cv = _mm_loadu_si128((const __m128i *)(c + j));                                \
            maxv = _mm_max_epu8(maxv, cv);                                                         \
            __m128i sel[NSUB];                                                                     \
            for (unsigned s = 0; s < (NSUB); s++) {                                                \
                __m128i is = _mm_sub_epi8(cv, off[s]);                                             \
                sel[s] = (NSUB) == 1 ? cv : _mm_or_si128(is, _mm_cmpgt_epi8(is, k15));             \
            }                                                                                      \
            __m128i ob[W], rb[W];                                                                  \
            for (unsigned b = 0; b < (W); b++) {                                                   \
                __m128i e = _mm_setzero_si128();                                                   \
                if (used[b])                                                                       \
                    for (unsigned s = 0; s < (NSUB); s++)                                          \
                        e = _mm_or_si128(e, _mm_shuffle_epi8(tab[b][s], sel[s]));                  \
                rb[b] = b < nraw ? _mm_loadu_si128((const __m128i *)(raw[b] + j))                  \
                                 : _mm_setzero_si128();                                            \
                ob[b] = _mm_or_si128(e, _mm_and_si128(rb[b], msk[b]));                             \
            }                                                                                      \
            if (sb != 0xFF) {                                                                      \
                __m128i sg = _mm_cmpeq_epi8(_mm_and_si128(rb[sb >> 3], sbit), sbit);               \
                ob[(W)-1] = _mm_or_si128(ob[(W)-1], _mm_and_si128(sg, k80));                       \
            }                                                                                      \
            WV_BT_STORE_##W(out + j * (W), ob);                                                    \
        }                                                                                          \
        if (n16) {                                                                                 \
            uint8_t mx[16];                                                                        \
            _mm_storeu_si128((__m128i *)mx, maxv);                                                 \
            for (unsigned i = 0; i < 16; i++)                                                      \
                if (mx[i] >= ntable)                                                               \
                    return UINT64_MAX;                                                             \
        }                                                                                          \
        return n16;                                                                                \
    }
#define WV_BT_STORE_1(p, ob) _mm_storeu_si128((__m128i *)(p), ob[0])
#define WV_BT_STORE_2(p, ob)                                                                       \
    do {                                                                                           \
        _mm_storeu_si128((__m128i *)(p), _mm_unpacklo_epi8(ob[0], ob[1]));                         \
        _mm_storeu_si128((__m128i *)(p) + 1, _mm_unpackhi_epi8(ob[0], ob[1]));                     \
    } while (0)
#define WV_BT_STORE_4(p, ob)                                                                       \
    do {                                                                                           \
        __m128i a_ = _mm_unpacklo_epi8(ob[0], ob[1]), b_ = _mm_unpackhi_epi8(ob[0], ob[1]);        \
        __m128i c_ = _mm_unpacklo_epi8(ob[2], ob[3]), d_ = _mm_unpackhi_epi8(ob[2], ob[3]);        \
        _mm_storeu_si128((__m128i *)(p), _mm_unpacklo_epi16(a_, c_));                              \
        _mm_storeu_si128((__m128i *)(p) + 1, _mm_unpackhi_epi16(a_, c_));                          \
        _mm_storeu_si128((__m128i *)(p) + 2, _mm_unpacklo_epi16(b_, d_));                          \
        _mm_storeu_si128((__m128i *)(p) + 3, _mm_unpackhi_epi16(b_, d_));                          \
    } while (0)
#define WV_BT_KERNELS(W)                                                                           \
    WV_BT_KERNEL(bt_run_##W##_1, W, 1)                                                             \
    WV_BT_KERNEL(bt_run_##W##_2, W, 2)                                                             \
    WV_BT_KERNEL(bt_run_##W##_3, W, 3)                                                             \
    WV_BT_KERNEL(bt_run_##W##_4, W, 4)                                                             \
    WV_BT_KERNEL(bt_run_##W##_5, W, 5)                                                             \
    WV_BT_KERNEL(bt_run_##W##_6, W, 6)                                                             \
    WV_BT_KERNEL(bt_run_##W##_7, W, 7)                                                             \
    WV_BT_KERNEL(bt_run_##W##_8, W, 8)
WV_BT_KERNELS(1)
WV_BT_KERNELS(2)
WV_BT_KERNELS(4)

typedef uint64_t (*wv_bt_fn)(const wv_bt_t *, uint64_t, const uint8_t *, uint64_t,
                             const uint8_t *const *, unsigned, void *);

/* ---- AVX-512 VBMI byte-table kernel: the same words, 64 elements per step. A byte of the
 * table is one 128-byte vector pair (tab[b] holds entries 0..127 in order), so the lookup
 * of 64 codes is one vpermi2b (vpermb up to 64 entries) instead of one pshufb per 16-entry
 * sub-table. Codes >= ntable wrap in the permute and are caught by the max check. Taken at
 * ISA level 2 on CPUs with AVX-512 F/BW/VBMI (level 1 keeps the SSSE3 kernel, so both are
 * tested on such a CPU). */
static int bt512_ok(void) {
    static int ok = -1;
    int v = __atomic_load_n(&ok, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vbmi");
        __atomic_store_n(&ok, v, __ATOMIC_RELAXED);
    }
    return v && wv_isa_level_internal() >= 2;
}

#define WV_BT512_KERNEL(NAME, W)                                                                   \
    __attribute__((target("avx512f,avx512bw,avx512vbmi"))) static uint64_t NAME(                  \
        const wv_bt_t *t, uint64_t ntable, const uint8_t *c, uint64_t cnt,                        \
        const uint8_t *const *raw, unsigned nraw, void *outp) {                                    \
        uint8_t *out = (uint8_t *)outp;                                                            \
        const uint64_t n64 = cnt & ~(uint64_t)63;                                                  \
        const unsigned sb = t->sign_bit, big = t->nsub > 4;                                        \
        const __m512i sbit = _mm512_set1_epi8((char)(1u << (sb & 7)));                             \
        const __m512i k80 = _mm512_set1_epi8((char)0x80);                                          \
        __m512i lo[W], hi[W], msk[W], maxv = _mm512_setzero_si512();                               \
        for (unsigned b = 0; b < (W); b++) {                                                       \
            lo[b] = _mm512_loadu_si512((const void *)t->tab[b][0]);                                \
            hi[b] = _mm512_loadu_si512((const void *)t->tab[b][4]);                                \
            msk[b] = _mm512_set1_epi8((char)t->mask[b]);                                           \
        }                                                                                          \
        for (uint64_t j = 0; j < n64; j += 64) {                                                   \
            __m512i cv = _mm512_loadu_si512((const void *)(c + j));                                \
            maxv = _mm512_max_epu8(maxv, cv);                                                      \
            __m512i ob[W], rb[W];                                                                  \
            for (unsigned b = 0; b < (W); b++) {                                                   \
                __m512i e = _mm512_setzero_si512();                                                \
                if (t->used[b])                                                                    \
                    e = big ? _mm512_permutex2var_epi8(lo[b], cv, hi[b])                           \
                            : _mm512_permutexvar_epi8(cv, lo[b]);                                  \
                rb[b] = b < nraw ? _mm512_loadu_si512((const void *)(raw[b] + j))                  \
                                 : _mm512_setzero_si512();                                         \
                ob[b] = _mm512_or_si512(e, _mm512_and_si512(rb[b], msk[b]));                       \
            }                                                                                      \
            if (sb != 0xFF) {                                                                      \
                __mmask64 sg = _mm512_test_epi8_mask(rb[sb >> 3], sbit);                           \
                ob[(W)-1] = _mm512_or_si512(ob[(W)-1], _mm512_maskz_mov_epi8(sg, k80));            \
            }                                                                                      \
            WV_BT512_STORE_##W(out + j * (W), ob);                                                 \
        }                                                                                          \
        if (n64) {                                                                                 \
            uint8_t mx[64];                                                                        \
            _mm512_storeu_si512((void *)mx, maxv);                                                 \
            for (unsigned i = 0; i < 64; i++)                                                      \
                if (mx[i] >= ntable)                                                               \
                    return UINT64_MAX;                                                             \
        }                                                                                          \
        return n64;                                                                                \
    }
#define WV_BT512_STORE_1(p, ob) _mm512_storeu_si512((void *)(p), ob[0])
#define WV_BT512_STORE2_H(p, ob, H)                                                                \
    _mm512_storeu_si512(                                                                           \
        (void *)((p) + 64 * (H)),                                                                  \
        _mm512_or_si512(_mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(ob[0], H)),                 \
                        _mm512_slli_epi16(                                                         \
                            _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(ob[1], H)), 8)))
#define WV_BT512_STORE_2(p, ob)                                                                    \
    do {                                                                                           \
        WV_BT512_STORE2_H(p, ob, 0);                                                               \
        WV_BT512_STORE2_H(p, ob, 1);                                                               \
    } while (0)
#define WV_BT512_B32(ob, B, Q) _mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(ob[B], Q))
#define WV_BT512_STORE4_Q(p, ob, Q)                                                                \
    _mm512_storeu_si512(                                                                           \
        (void *)((p) + 64 * (Q)),                                                                  \
        _mm512_or_si512(_mm512_or_si512(WV_BT512_B32(ob, 0, Q),                                    \
                                        _mm512_slli_epi32(WV_BT512_B32(ob, 1, Q), 8)),             \
                        _mm512_or_si512(_mm512_slli_epi32(WV_BT512_B32(ob, 2, Q), 16),             \
                                        _mm512_slli_epi32(WV_BT512_B32(ob, 3, Q), 24))))
#define WV_BT512_STORE_4(p, ob)                                                                    \
    do {                                                                                           \
        WV_BT512_STORE4_Q(p, ob, 0);                                                               \
        WV_BT512_STORE4_Q(p, ob, 1);                                                               \
        WV_BT512_STORE4_Q(p, ob, 2);                                                               \
        WV_BT512_STORE4_Q(p, ob, 3);                                                               \
    } while (0)
WV_BT512_KERNEL(bt512_run_1, 1)
WV_BT512_KERNEL(bt512_run_2, 2)
WV_BT512_KERNEL(bt512_run_4, 4)
static const wv_bt_fn bt512_fns[3] = {bt512_run_1, bt512_run_2, bt512_run_4};

static uint64_t bt_run(const wv_bt_t *t, uint64_t ntable, const uint8_t *c, uint64_t cnt,
                       const uint8_t *const *raw, unsigned nraw, void *out) {
    static const wv_bt_fn fns[3][WV_BT_MAXSUB] = {
        {bt_run_1_1, bt_run_1_2, bt_run_1_3, bt_run_1_4, bt_run_1_5, bt_run_1_6, bt_run_1_7,
         bt_run_1_8},
        {bt_run_2_1, bt_run_2_2, bt_run_2_3, bt_run_2_4, bt_run_2_5, bt_run_2_6, bt_run_2_7,
         bt_run_2_8},
        {bt_run_4_1, bt_run_4_2, bt_run_4_3, bt_run_4_4, bt_run_4_5, bt_run_4_6, bt_run_4_7,
         bt_run_4_8},
    };
    unsigned wi = t->width == 1 ? 0 : t->width == 2 ? 1 : 2;
    if (t->nsub < 1 || t->nsub > WV_BT_MAXSUB)
        return 0;
    uint64_t done = 0;
    if (bt512_ok()) {
        done = bt512_fns[wi](t, ntable, c, cnt, raw, nraw, out);
        if (done == UINT64_MAX || cnt - done < 16)
            return done;
    }
    const uint8_t *rawd[8];
    for (unsigned b = 0; b < nraw && b < 8; b++)
        rawd[b] = raw[b] + done;
    uint64_t more = fns[wi][t->nsub - 1](t, ntable, c + done, cnt - done, rawd, nraw,
                                         (uint8_t *)out + done * t->width);
    return more == UINT64_MAX ? more : done + more;
}
#else
static uint64_t bt_run(const wv_bt_t *t, uint64_t ntable, const uint8_t *c, uint64_t cnt,
                       const uint8_t *const *raw, unsigned nraw, void *out) {
    (void)t, (void)ntable, (void)c, (void)cnt, (void)raw, (void)nraw, (void)out;
    return 0;
}
#endif

/* bits [p, p + w) of a little-endian bit-packed byte array (w <= 8) */
static inline unsigned get_bits(const uint8_t *a, uint64_t p, unsigned w) {
    uint64_t byte = p >> 3;
    unsigned sh = (unsigned)(p & 7);
    unsigned v = a[byte] >> sh;
    if (sh + w > 8)
        v |= (unsigned)a[byte + 1] << (8 - sh);
    return v & ((1u << w) - 1);
}

#if WV_X86
/* SSSE3 part of expand_top: 16 fields (2 rem bytes) per step from i (a multiple of 8), as
 * long as the 16-byte load stays inside the top_bytes of top. Lane j of two 8 x 16-bit
 * vectors gets the two bytes holding field j (pshufb); a multiply by 2^(8 - shift_j) puts
 * the field at bits 8.., a shift and a mask keep it, and packus narrows to bytes. Returns
 * the fields done. */
__attribute__((target("ssse3"))) static uint64_t expand_top_ssse3(const uint8_t *top,
                                                                   uint64_t top_bytes,
                                                                   unsigned rem, uint64_t i,
                                                                   uint64_t e, uint8_t *tv) {
    uint8_t sl[16], sh[16];
    uint16_t mul[8];
    for (unsigned j = 0; j < 8; j++) {
        unsigned o = rem * j, b = o >> 3;
        sl[2 * j] = (uint8_t)b;
        sl[2 * j + 1] = (uint8_t)(b + 1);
        sh[2 * j] = (uint8_t)(rem + b);
        sh[2 * j + 1] = (uint8_t)(rem + b + 1);
        mul[j] = (uint16_t)(1u << (8 - (o & 7)));
    }
    const __m128i ml = _mm_loadu_si128((const __m128i *)sl), mh = _mm_loadu_si128((const __m128i *)sh);
    const __m128i mu = _mm_loadu_si128((const __m128i *)mul);
    const __m128i mk = _mm_set1_epi16((short)((1u << rem) - 1));
    uint64_t done = 0;
    for (; e - i >= 16 && (i >> 3) * rem + 16 <= top_bytes; i += 16, done += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(top + (i >> 3) * rem));
        __m128i lo = _mm_and_si128(_mm_srli_epi16(_mm_mullo_epi16(_mm_shuffle_epi8(x, ml), mu), 8), mk);
        __m128i hi = _mm_and_si128(_mm_srli_epi16(_mm_mullo_epi16(_mm_shuffle_epi8(x, mh), mu), 8), mk);
        _mm_storeu_si128((__m128i *)(tv + done), _mm_packus_epi16(lo, hi));
    }
    return done;
}
#endif

#if WV_X86
/* AVX-512 VBMI part of expand_top: 64 fields (8 groups of rem bytes) per step from i (a
 * multiple of 8). vpermb puts group L's rem bytes at the start of 64-bit lane L, vpmultishiftqb
 * takes the 8 bits at offset j * rem of each lane as byte j, and a mask keeps rem of them. The
 * load is masked to the 8 * rem bytes the step uses, so it never reads past them. */
__attribute__((target("avx512f,avx512bw,avx512vbmi"))) static uint64_t expand_top_512(
    const uint8_t *top, unsigned rem, uint64_t i, uint64_t e, uint8_t *tv) {
    uint8_t idx[64], ctl[64];
    for (unsigned l = 0; l < 8; l++)
        for (unsigned k = 0; k < 8; k++) {
            idx[8 * l + k] = (uint8_t)(l * rem + k);
            ctl[8 * l + k] = (uint8_t)(k * rem);
        }
    const __m512i vi = _mm512_loadu_si512((const void *)idx);
    const __m512i vc = _mm512_loadu_si512((const void *)ctl);
    const __m512i mk = _mm512_set1_epi8((char)((1u << rem) - 1));
    const __mmask64 lm = ((__mmask64)1 << (8 * rem)) - 1;
    uint64_t done = 0;
    for (; e - i >= 64; i += 64, done += 64) {
        __m512i x = _mm512_maskz_loadu_epi8(lm, (const void *)(top + (i >> 3) * rem));
        __m512i g = _mm512_permutexvar_epi8(vi, x);
        _mm512_storeu_si512((void *)(tv + done),
                            _mm512_and_si512(_mm512_multishift_epi64_epi8(vc, g), mk));
    }
    return done;
}
#endif

/* tv[0..cnt) = the rem-bit fields of elements i0..i0+cnt of top (top_bytes long). Eight
 * elements of rem bits fill exactly rem bytes, so aligned groups are read as one
 * little-endian word (16 at a time with SSSE3). */
static void expand_top(const uint8_t *top, uint64_t top_bytes, unsigned rem, uint64_t i0,
                       uint64_t cnt, uint8_t *tv) {
    uint64_t i = i0, e = i0 + cnt;
    for (; i < e && (i & 7); i++)
        *tv++ = (uint8_t)get_bits(top, i * rem, rem);
#if WV_X86
    if (rem <= 7 && bt512_ok()) {
        uint64_t d = expand_top_512(top, rem, i, e, tv);
        i += d;
        tv += d;
    }
    if (wv_merge_simd_ok() && wv_isa_level_internal() >= 1) {
        uint64_t d = expand_top_ssse3(top, top_bytes, rem, i, e, tv);
        i += d;
        tv += d;
    }
#else
    (void)top_bytes;
#endif
    /* one loop per field width, so shifts and masks are constants and the 8 fields of a
     * group are assembled in a register and stored at once */
#define WV_TOP_GROUPS(REM)                                                                         \
    for (; e - i >= 8; i += 8, tv += 8) {                                                          \
        const uint8_t *b = top + (i >> 3) * (REM);                                                 \
        uint64_t w = 0, v = 0;                                                                     \
        for (unsigned k = 0; k < (REM); k++)                                                       \
            w |= (uint64_t)b[k] << (8 * k);                                                        \
        for (unsigned j = 0; j < 8; j++)                                                           \
            v |= ((w >> (j * (REM))) & ((1u << (REM)) - 1)) << (8 * j);                            \
        for (unsigned j = 0; j < 8; j++)                                                           \
            tv[j] = (uint8_t)(v >> (8 * j));                                                       \
    }
    switch (rem) {
    case 1: WV_TOP_GROUPS(1) break;
    case 2: WV_TOP_GROUPS(2) break;
    case 3: WV_TOP_GROUPS(3) break;
    case 4: WV_TOP_GROUPS(4) break;
    case 5: WV_TOP_GROUPS(5) break;
    case 6: WV_TOP_GROUPS(6) break;
    default: WV_TOP_GROUPS(7) break;
    }
#undef WV_TOP_GROUPS
    for (; i < e; i++)
        *tv++ = (uint8_t)get_bits(top, i * rem, rem);
}

/* One chunk: o[j] for j < cnt, element index i0 + j, codes c[j]. */
#define WV_FM_BODY(OUT_T, RAWEXPR)                                                                 \
    for (uint64_t j = j0; j < cnt; j++) {                                                          \
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
        for (uint64_t j = j0; j < cnt; j++) {                                                      \
            uint64_t r = (uint64_t)tv[j] << sh;                                                    \
            for (unsigned p = 0; p < NP; p++)                                                      \
                r |= (uint64_t)p0[j + (uint64_t)p * n] << (8 * p);                                 \
            o[j] = (OUT_T)(ex[j] | ((OUT_T)r & mmask) |                                            \
                           (OUT_T)((OUT_T)(r >> mant_bits) << (wbits - 1)));                       \
        }                                                                                          \
    }

/* Codes of elements [e, e + cnt) laid out in rows (code(i) = codes[(i / blen) * bstride +
 * i % blen]): a pointer into codes when they are contiguous there, else gathered into cb.
 * Gathering short rows (a depthwise conv's 9 codes per filter) lets the kernels run whole
 * chunks instead of paying their setup once per row. */
#define WV_ROWS_CHUNK_DEFINE(CODE_T)                                                               \
    static inline const CODE_T *wv_rows_chunk_##CODE_T(const CODE_T *codes, uint64_t blen,         \
                                                       uint64_t bstride, uint64_t e,               \
                                                       uint64_t cnt, CODE_T *cb) {                 \
        uint64_t row = e / blen, col = e % blen;                                                   \
        if (blen == bstride || blen - col >= cnt)                                                  \
            return codes + row * bstride + col;                                                    \
        for (uint64_t k = 0; k < cnt; row++, col = 0) {                                            \
            const CODE_T *src = codes + row * bstride + col;                                       \
            uint64_t take = blen - col < cnt - k ? blen - col : cnt - k;                           \
            for (uint64_t t = 0; t < take; t++)                                                    \
                cb[k + t] = src[t];                                                                \
            k += take;                                                                             \
        }                                                                                          \
        return cb;                                                                                 \
    }
WV_ROWS_CHUNK_DEFINE(uint8_t)
WV_ROWS_CHUNK_DEFINE(uint16_t)

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
        wv_bt_t bt;                                                                                \
        const int use_bt = bt_usable(sizeof(CODE_T), sizeof(OUT_T), ntable);                       \
        if (sizeof(CODE_T) == 1)                                                                   \
            for (unsigned k = 0; k < 256; k++)                                                     \
                tab8[k] = k < ntable ? (OUT_T)((OUT_T)table[k] << mant_bits) : 0;                  \
        if (use_bt) {                                                                              \
            uint64_t ent[16 * WV_BT_MAXSUB];                                                       \
            for (unsigned k = 0; k < ntable; k++)                                                  \
                ent[k] = (uint64_t)table[k] << mant_bits;                                          \
            bt_init(&bt, (unsigned)sizeof(OUT_T), ntable, ent, mmask, mant_bits);                  \
        }                                                                                          \
        CODE_T cb[WV_FM_CHUNK];                                                                    \
        for (uint64_t e = 0; e < count;) {                                                         \
            const uint64_t cnt = count - e < WV_FM_CHUNK ? count - e : WV_FM_CHUNK;                \
            const CODE_T *restrict c = wv_rows_chunk_##CODE_T(codes, blen, bstride, e, cnt, cb);   \
            const uint64_t i0 = first + e;                                                         \
            const uint8_t *restrict p0 = planes + i0;                                              \
            OUT_T *restrict o = out + e;                                                           \
            e += cnt;                                                                              \
            const unsigned sh = 8u * np;                                                           \
            if (rem)                                                                               \
                expand_top(top, (n * rem + 7) / 8, rem, i0, cnt, tv);                              \
            uint64_t j0 = 0;                                                                       \
            if (use_bt) {                                                                          \
                const uint8_t *raw[8] = {p0, p0 + n, p0 + 2 * n, tv};                              \
                raw[np] = tv;                                                                      \
                j0 = bt_run(&bt, ntable, (const uint8_t *)c, cnt, raw, np + (rem ? 1u : 0u),       \
                            o);                                                                    \
                if (j0 == UINT64_MAX)                                                              \
                    return WV_ECORRUPT;                                                            \
            }                                                                                      \
            unsigned bad = 0;                                                                      \
            if (sizeof(CODE_T) == 1) {                                                             \
                for (uint64_t j = j0; j < cnt; j++) {                                              \
                    bad |= (unsigned)(c[j] >= ntable);                                             \
                    ex[j] = tab8[c[j] & 0xFF];                                                     \
                }                                                                                  \
            } else {                                                                               \
                for (uint64_t j = j0; j < cnt; j++)                                                \
                    bad |= (unsigned)(c[j] >= ntable);                                             \
                if (!bad)                                                                          \
                    for (uint64_t j = j0; j < cnt; j++)                                            \
                        ex[j] = (OUT_T)((OUT_T)table[c[j]] << mant_bits);                          \
            }                                                                                      \
            if (bad)                                                                               \
                return WV_ECORRUPT;                                                                \
            if (rem) {                                                                             \
                WV_FM_PLANES(OUT_T, np, (OUT_T)((OUT_T)tv[j] << sh))                               \
            } else {                                                                               \
                if (np > 3)                                                                        \
                    memset(tv, 0, (size_t)cnt);                                                    \
                WV_FM_PLANES(OUT_T, np, (OUT_T)0)                                                  \
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


/* b <= 56 bits at *bitpos of extra (nbits of data, extra_bytes readable), LSB first; the
 * position moves past them. Bits past the data set *bad and read nothing out of bounds. */
static inline uint64_t gap_bits(uint64_t b, const uint8_t *extra, uint64_t extra_bytes,
                                uint64_t nbits, uint64_t *bitpos, uint64_t *bad) {
    const uint64_t at = *bitpos;
    if (b > 56 || b > nbits - at) {
        *bad = 1;
        return 0;
    }
    const uint64_t byte = at >> 3;
    uint64_t v;
    if (WV_LIKELY(byte + 8 <= extra_bytes)) {
        v = (load_le64(extra + byte) >> (at & 7)) & ((UINT64_C(1) << b) - 1);
    } else {
        v = 0;
        for (unsigned got = 0; got < b;) { /* the last bytes: a byte at a time */
            unsigned sh = (unsigned)((at + got) & 7), take = 8 - sh;
            if (take > b - got)
                take = (unsigned)(b - got);
            v |= (uint64_t)((extra[(at + got) >> 3] >> sh) & ((1u << take) - 1)) << got;
            got += take;
        }
    }
    *bitpos = at + b;
    return v;
}

/* An escaped distance: b = g - esc extra bits give esc + 2^b - 1 + value. Bad data (a width
 * past the data or > 56 bits, a wrapped distance) sets *bad. */
static inline uint64_t gap_escape(uint64_t g, uint64_t esc, const uint8_t *extra,
                                  uint64_t extra_bytes, uint64_t nbits, uint64_t *bitpos,
                                  uint64_t *bad) {
    const uint64_t b = g - esc;
    if (b > 56) {
        *bad = 1;
        return g;
    }
    const uint64_t v = gap_bits(b, extra, extra_bytes, nbits, bitpos, bad);
    const uint64_t ge = esc + ((UINT64_C(1) << b) - 1) + v;
    *bad |= ge < esc; /* wrapped: no such distance */
    return ge;
}

/* A Rice-coded distance: the symbol is the quotient g, the next r extra bits the low bits:
 * (g << r) | bits. A quotient that would overflow sets *bad. */
static inline uint64_t gap_rice(uint64_t g, unsigned r, const uint8_t *extra,
                                uint64_t extra_bytes, uint64_t nbits, uint64_t *bitpos,
                                uint64_t *bad) {
    *bad |= g > (UINT64_MAX >> r);
    return (g << r) | gap_bits(r, extra, extra_bytes, nbits, bitpos, bad);
}

/* The decode loop, once per code type, distance coding (MODE 0 plain, 1 escapes, 2 Rice)
 * and value type VT (positions go to pos when it is given, else VT values are scattered into
 * out), so the per-operand work is resolved at compile time. Escapes are rare (long
 * distances), so they take a branch to gap_escape and the common path stays short; the
 * only loop-carried chains are the offset, the operand count and (escapes, Rice) the bit
 * position. Data errors are or-ed into bad and checked after the loop; every write is
 * bounds-checked before it happens. */
#define WV_GAP_DEFINE(NAME, CODE_T, MODE, VT)                                                      \
    static int NAME(const CODE_T *restrict seq, uint64_t nseq, uint64_t delim,                     \
                    const uint64_t *restrict table, uint64_t ntable, uint64_t esc,                 \
                    unsigned rice,                                                                 \
                    const uint8_t *restrict extra, uint64_t extra_bytes, uint64_t block_len,       \
                    uint64_t nblocks, int64_t *restrict pos, uint64_t npos,                        \
                    const VT *restrict vals, VT *restrict out) {                                   \
        const uint64_t nbits = extra_bytes > UINT64_MAX / 8 ? UINT64_MAX : extra_bytes * 8;        \
        const uint64_t nout = nblocks * block_len;                                                 \
        uint64_t bitpos = 0, block = 0, k = 0, off = 0, step = 0, base = 0, bad = 0;               \
        for (uint64_t i = 0; i < nseq; i++) {                                                      \
            uint64_t c = seq[i];                                                                   \
            if (WV_UNLIKELY(c == delim)) {                                                         \
                if (block == nblocks)                                                              \
                    return WV_ECORRUPT;                                                            \
                block++;                                                                           \
                base += block_len;                                                                 \
                off = 0;                                                                           \
                step = 0;                                                                          \
                continue;                                                                          \
            }                                                                                      \
            if (WV_UNLIKELY((c >= ntable) | (block == nblocks) | (k == npos)))                     \
                return WV_ECORRUPT;                                                                \
            uint64_t g = table[c];                                                                 \
            if (MODE == 1 && WV_UNLIKELY(g >= esc))                                                \
                g = gap_escape(g, esc, extra, extra_bytes, nbits, &bitpos, &bad);                  \
            if (MODE == 2)                                                                         \
                g = gap_rice(g, rice, extra, extra_bytes, nbits, &bitpos, &bad);                   \
            /* next offset: g after the block start, or g + 1 after the previous one (an       \
             * offset outside the block flags bad; positions are only used on success) */      \
            bad |= (g >= block_len) | (off + step + g >= block_len);                               \
            off += step + g;                                                                       \
            step = 1;                                                                              \
            const uint64_t p_ = base + off;                                                        \
            if (pos) {                                                                             \
                pos[k] = (int64_t)p_;                                                              \
            } else if (WV_LIKELY(p_ < nout)) { /* an offset past its block: bad, no write */      \
                out[p_] = vals[k];                                                                 \
            }                                                                                      \
            k++;                                                                                   \
        }                                                                                          \
        if (bad || block != nblocks || k != npos || nbits - bitpos >= 8)                           \
            return WV_ECORRUPT;                                                                    \
        return WV_OK;                                                                              \
    }
#define WV_GAP_DEFINE_ALL(SFX, VT)                                                                 \
    WV_GAP_DEFINE(gaps_u8_##SFX, uint8_t, 0, VT)                                                   \
    WV_GAP_DEFINE(gaps_u16_##SFX, uint16_t, 0, VT)                                                 \
    WV_GAP_DEFINE(gaps_u32_##SFX, uint32_t, 0, VT)                                                 \
    WV_GAP_DEFINE(gaps_u8_esc_##SFX, uint8_t, 1, VT)                                               \
    WV_GAP_DEFINE(gaps_u16_esc_##SFX, uint16_t, 1, VT)                                             \
    WV_GAP_DEFINE(gaps_u32_esc_##SFX, uint32_t, 1, VT)                                             \
    WV_GAP_DEFINE(gaps_u8_rice_##SFX, uint8_t, 2, VT)                                              \
    WV_GAP_DEFINE(gaps_u16_rice_##SFX, uint16_t, 2, VT)                                            \
    WV_GAP_DEFINE(gaps_u32_rice_##SFX, uint32_t, 2, VT)
WV_GAP_DEFINE_ALL(p, uint8_t) /* positions and 1-byte scatter */
WV_GAP_DEFINE_ALL(w2, uint16_t)
WV_GAP_DEFINE_ALL(w4, uint32_t)
WV_GAP_DEFINE_ALL(w8, uint64_t)
#undef WV_GAP_DEFINE_ALL

static int gap_run(const void *seq, uint32_t code_width, uint64_t nseq, uint64_t delim,
                   const uint64_t *table, uint64_t ntable, uint64_t esc, uint32_t rice,
                   const uint8_t *extra, uint64_t extra_bytes, uint64_t block_len,
                   uint64_t nblocks, int64_t *pos, uint64_t npos, const void *vals,
                   uint32_t vwidth, void *out) {
    if (code_width != 1 && code_width != 2 && code_width != 4)
        return WV_EINVAL;
    if (rice > 56 || (rice && esc != UINT64_MAX)) /* Rice and escapes do not mix */
        return WV_EINVAL;
    if ((nseq && !seq) || (ntable && !table) || (extra_bytes && !extra))
        return WV_EINVAL;
    if (delim < ntable || block_len > (uint64_t)INT64_MAX ||
        (nblocks && block_len > (uint64_t)INT64_MAX / nblocks))
        return WV_EINVAL;
    if (nseq != nblocks + npos)
        return WV_ECORRUPT;
    /* an escape threshold above every table entry never fires: the plain loop */
    int use_esc = 0;
    for (uint64_t c = 0; c < ntable; c++)
        use_esc |= table[c] >= esc;
#define WV_GAP_CALL(F, VT)                                                                         \
    F((const void *)seq, nseq, delim, table, ntable, esc, rice, extra, extra_bytes, block_len,     \
      nblocks, pos, npos, (const VT *)vals, (VT *)out)
#define WV_GAP_PICK(SFX, VT)                                                                       \
    do {                                                                                           \
        if (rice) {                                                                                \
            if (code_width == 1)                                                                   \
                return WV_GAP_CALL(gaps_u8_rice_##SFX, VT);                                        \
            if (code_width == 2)                                                                   \
                return WV_GAP_CALL(gaps_u16_rice_##SFX, VT);                                       \
            return WV_GAP_CALL(gaps_u32_rice_##SFX, VT);                                           \
        }                                                                                          \
        if (code_width == 1)                                                                       \
            return use_esc ? WV_GAP_CALL(gaps_u8_esc_##SFX, VT) : WV_GAP_CALL(gaps_u8_##SFX, VT);  \
        if (code_width == 2)                                                                       \
            return use_esc ? WV_GAP_CALL(gaps_u16_esc_##SFX, VT)                                   \
                           : WV_GAP_CALL(gaps_u16_##SFX, VT);                                      \
        return use_esc ? WV_GAP_CALL(gaps_u32_esc_##SFX, VT) : WV_GAP_CALL(gaps_u32_##SFX, VT);    \
    } while (0)
    switch (vwidth) {
    case 0:
    case 1: WV_GAP_PICK(p, uint8_t);
    case 2: WV_GAP_PICK(w2, uint16_t);
    case 4: WV_GAP_PICK(w4, uint32_t);
    default: WV_GAP_PICK(w8, uint64_t);
    }
#undef WV_GAP_PICK
#undef WV_GAP_CALL
}

int wv_fields_gap_positions(const void *seq, uint32_t code_width, uint64_t nseq, uint64_t delim,
                            const uint64_t *table, uint64_t ntable, uint64_t esc, uint32_t rice,
                            const uint8_t *extra, uint64_t extra_bytes, uint64_t block_len,
                            uint64_t nblocks, int64_t *pos, uint64_t npos) {
    static int64_t dummy;
    if (npos && !pos)
        return WV_EINVAL;
    return gap_run(seq, code_width, nseq, delim, table, ntable, esc, rice, extra, extra_bytes,
                   block_len, nblocks, pos ? pos : &dummy, npos, NULL, 0, NULL);
}

int wv_fields_gap_scatter(const void *seq, uint32_t code_width, uint64_t nseq, uint64_t delim,
                          const uint64_t *table, uint64_t ntable, uint64_t esc, uint32_t rice,
                          const uint8_t *extra, uint64_t extra_bytes, uint64_t block_len,
                          uint64_t nblocks, const void *vals, uint64_t nvals, uint32_t width,
                          void *out) {
    if (width != 1 && width != 2 && width != 4 && width != 8)
        return WV_EINVAL;
    if ((nvals && !vals) || (nblocks && block_len && !out))
        return WV_EINVAL;
    if (block_len > (uint64_t)INT64_MAX || (nblocks && block_len > (uint64_t)INT64_MAX / nblocks))
        return WV_EINVAL;
    const uint64_t nout = nblocks * block_len;
    if (nout > (uint64_t)SIZE_MAX / width)
        return WV_EINVAL;
    if (nout > 0)
        memset(out, 0, (size_t)(nout * width));
    return gap_run(seq, code_width, nseq, delim, table, ntable, esc, rice, extra, extra_bytes,
                   block_len, nblocks, NULL, nvals, vals, width, out);
}

/* ---- signs of zero words -------------------------------------------------------------- */
/* Branch-free: every word is rewritten (v | sign), the bit index advances by the zero test,
 * and the byte read is clamped into the stream (a zero past the last bit is caught by
 * `over`, checked after the loop). Random zero positions would mispredict a branch. */
#define WV_ZS_DEFINE(NAME, T)                                                                      \
    static int NAME(T *restrict o, uint64_t n, const uint8_t *restrict bits, uint64_t nbits) {     \
        const unsigned shift = 8u * (unsigned)sizeof(T) - 1u;                                      \
        if (nbits == 0) {                                                                          \
            for (uint64_t j = 0; j < n; j++)                                                       \
                if (o[j] == 0)                                                                     \
                    return WV_ECORRUPT;                                                            \
            return WV_OK;                                                                          \
        }                                                                                          \
        const uint64_t last = (nbits - 1) >> 3;                                                    \
        uint64_t pos = 0, over = 0;                                                                \
        for (uint64_t j = 0; j < n; j++) {                                                         \
            const T v = o[j];                                                                      \
            const uint64_t z = (uint64_t)(v == 0);                                                 \
            const uint64_t at = (pos >> 3) < last ? (pos >> 3) : last;                             \
            const uint64_t bit = ((uint64_t)bits[at] >> (pos & 7)) & z;                            \
            over |= z & (uint64_t)(pos >= nbits);                                                  \
            o[j] = (T)(v | (T)(bit << shift));                                                     \
            pos += z;                                                                              \
        }                                                                                          \
        return over || pos != nbits ? WV_ECORRUPT : WV_OK;                                         \
    }

WV_ZS_DEFINE(zero_signs_8, uint8_t)
WV_ZS_DEFINE(zero_signs_16, uint16_t)
WV_ZS_DEFINE(zero_signs_32, uint32_t)
WV_ZS_DEFINE(zero_signs_64, uint64_t)

int wv_fields_zero_signs(void *out, uint64_t n, uint32_t width, const uint8_t *bits,
                         uint64_t nbits) {
    if ((n && !out) || (nbits && !bits))
        return WV_EINVAL;
    switch (width) {
    case 1:
        return zero_signs_8((uint8_t *)out, n, bits, nbits);
    case 2:
        return zero_signs_16((uint16_t *)out, n, bits, nbits);
    case 4:
        return zero_signs_32((uint32_t *)out, n, bits, nbits);
    case 8:
        return zero_signs_64((uint64_t *)out, n, bits, nbits);
    default:
        return WV_EINVAL;
    }
}

/* ---- dictionary lookup ---------------------------------------------------------------- */
#define WV_LK_DEFINE(NAME, OUT_T, CODE_T)                                                          \
    static int NAME(const CODE_T *restrict codes, uint64_t blen, uint64_t bstride,                \
                    const OUT_T *restrict table, uint64_t ntable, OUT_T *restrict out,             \
                    uint64_t count) {                                                              \
        wv_bt_t bt;                                                                                \
        const int use_bt = bt_usable(sizeof(CODE_T), sizeof(OUT_T), ntable);                       \
        if (use_bt) {                                                                              \
            uint64_t ent[16 * WV_BT_MAXSUB];                                                       \
            for (unsigned k = 0; k < ntable; k++)                                                  \
                ent[k] = (uint64_t)table[k];                                                       \
            bt_init(&bt, (unsigned)sizeof(OUT_T), ntable, ent, 0, 0xFF);                           \
        }                                                                                          \
        CODE_T cb[WV_FM_CHUNK];                                                                    \
        for (uint64_t e = 0; e < count;) {                                                         \
            const uint64_t cnt = count - e < WV_FM_CHUNK ? count - e : WV_FM_CHUNK;                \
            const CODE_T *restrict c = wv_rows_chunk_##CODE_T(codes, blen, bstride, e, cnt, cb);   \
            OUT_T *restrict o = out + e;                                                           \
            e += cnt;                                                                              \
            uint64_t j0 = 0;                                                                       \
            if (use_bt) {                                                                          \
                j0 = bt_run(&bt, ntable, (const uint8_t *)c, cnt, NULL, 0, o);                     \
                if (j0 == UINT64_MAX)                                                              \
                    return WV_ECORRUPT;                                                            \
            }                                                                                      \
            unsigned bad = 0;                                                                      \
            for (uint64_t j = j0; j < cnt; j++)                                                    \
                bad |= (unsigned)(c[j] >= ntable);                                                 \
            if (bad)                                                                               \
                return WV_ECORRUPT;                                                                \
            for (uint64_t j = j0; j < cnt; j++)                                                    \
                o[j] = table[c[j]];                                                                \
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

/* ---- fused tree decode ------------------------------------------------------------------ */
/* tree positions per chunk: codes and the extract's second buffer (2 x 256 KB for 8-bit
 * codes) stay in L2/L3 between the extract and the merge; 2^16 was 5-10% slower on 1M-weight
 * tensors here (more per-chunk node listings, each with four ranks per tree node) */
#define WV_TD_CHUNK (UINT64_C(1) << 18)

typedef struct wv_td_sink {
    int is_float;
    const void *table;
    uint64_t ntable;
    uint32_t exp_bits, mant_bits, width;
    const uint8_t *planes, *top;
    uint64_t nplanes_bytes, top_bytes, nelems;
} wv_td_sink_t;

static uint64_t td_ops(uint64_t p, uint64_t lead, uint64_t block) {
    uint64_t q = p > lead ? p - lead : 0;
    if (!block)
        return q;
    uint64_t b = q / (block + 1), o = q % (block + 1);
    return b * block + (o < block ? o : block);
}

/* count elements from `first` whose codes are rows of blen at stride bstride */
static int td_emit(const wv_td_sink_t *k, const void *codes, uint32_t cw, uint64_t ncodes,
                   uint64_t blen, uint64_t bstride, uint64_t first, void *out, uint64_t count) {
    if (k->is_float)
        return wv_fields_merge_float(codes, cw, ncodes, blen, bstride, (const uint16_t *)k->table,
                                     k->ntable, k->exp_bits, k->mant_bits, k->planes,
                                     k->nplanes_bytes, k->top, k->top_bytes, k->nelems, first, out,
                                     k->width, count);
    (void)first;
    return wv_fields_lookup(codes, cw, ncodes, blen, bstride, k->table, k->ntable, k->width, out,
                            count);
}

static int td_run(const wv_wt_t *wt, uint64_t start, uint64_t stop, uint64_t lead,
                  uint64_t block, const wv_td_sink_t *k, void *out, uint64_t out_count) {
    if (!wt || (!out && out_count))
        return WV_EINVAL;
    if (start > stop || stop > wt->n)
        return WV_ERANGE;
    const uint64_t nel = k->nelems;
    if (block > UINT64_MAX / 2 || nel > td_ops(wt->n, lead, block))
        return WV_EINVAL;
    uint64_t e0 = td_ops(start, lead, block), e1 = td_ops(stop, lead, block);
    e0 = e0 < nel ? e0 : nel;
    e1 = e1 < nel ? e1 : nel;
    if (out_count != e1 - e0)
        return WV_EINVAL;
    if (e1 == e0)
        return WV_OK;
    uint64_t maxsym = wt->nsyms ? wt->skey[wt->nsyms - 1] : 0;
    if (maxsym > 0xFFFF)
        return WV_EINVAL;
    const uint32_t cw = maxsym <= 0xFF ? 1 : 2;
    uint64_t ch = stop - start < WV_TD_CHUNK ? stop - start : WV_TD_CHUNK, nws = 0;
    int st = wv_wt_extract_ws(wt, start, start + ch, &nws);
    if (st != WV_OK)
        return st;
    /* entries for a chunk depend on its length only (sum over levels of min(nodes, len)) */
    uint8_t *codes = malloc((size_t)(ch * cw)), *tmp = malloc((size_t)(ch * cw));
    uint64_t *ws = malloc((size_t)(nws ? nws : 1) * WV_XENT_WORDS * sizeof(uint64_t));
    if (!codes || !tmp || !ws) {
        free(codes), free(tmp), free(ws);
        return WV_ENOMEM;
    }
    const size_t ow = k->width;
    for (uint64_t p = start; p < stop && st == WV_OK; p += ch) {
        uint64_t q = stop - p < ch ? stop : p + ch;
        uint64_t a = td_ops(p, lead, block), b = td_ops(q, lead, block);
        a = a < nel ? a : nel;
        b = b < nel ? b : nel;
        if (a == b)
            continue;
        st = wv_wt_extract(wt, p, q, codes, cw, tmp, 0, ws, nws);
        if (st != WV_OK)
            break;
        uint64_t x = p > lead ? p : lead; /* first operand position at or after p */
        uint64_t col = block ? (x - lead) % (block + 1) : 0;
        if (block && col == block)
            x++, col = 0;
        const uint8_t *c = codes + (x - p) * cw;
        uint8_t *o = (uint8_t *)out + (a - e0) * ow;
        uint64_t cnt = b - a, avail = q - x;
        if (!block) {
            st = td_emit(k, c, cw, avail, cnt, cnt, a, o, cnt);
            continue;
        }
        uint64_t r1 = block - col < cnt ? block - col : cnt; /* the rest of x's row */
        st = td_emit(k, c, cw, avail, r1, r1, a, o, r1);
        if (st == WV_OK && cnt > r1)
            st = td_emit(k, c + (r1 + 1) * cw, cw, avail - (r1 + 1), block, block + 1, a + r1,
                         o + r1 * ow, cnt - r1);
    }
    free(codes), free(tmp), free(ws);
    return st;
}

int wv_wt_decode_float(const wv_wt_t *wt, uint64_t start, uint64_t stop, uint64_t lead,
                       uint64_t block, uint64_t nelems, const uint16_t *table, uint64_t ntable,
                       uint32_t exp_bits, uint32_t mant_bits, const uint8_t *planes,
                       uint64_t nplanes_bytes, const uint8_t *top, uint64_t top_bytes, void *out,
                       uint32_t out_width, uint64_t out_count) {
    wv_td_sink_t k = {1, table, ntable, exp_bits, mant_bits, out_width, planes, top,
                      nplanes_bytes, top_bytes, nelems};
    if (out_width != 2 && out_width != 4 && out_width != 8)
        return WV_EINVAL;
    return td_run(wt, start, stop, lead, block, &k, out, out_count);
}

int wv_wt_decode_lookup(const wv_wt_t *wt, uint64_t start, uint64_t stop, uint64_t lead,
                        uint64_t block, uint64_t nelems, const void *table, uint64_t ntable,
                        uint32_t width, void *out, uint64_t out_count) {
    wv_td_sink_t k = {0, table, ntable, 0, 0, width, NULL, NULL, 0, 0, nelems};
    if (width != 1 && width != 2 && width != 4 && width != 8)
        return WV_EINVAL;
    return td_run(wt, start, stop, lead, block, &k, out, out_count);
}
