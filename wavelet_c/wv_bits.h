/*
 * wv_bits.h -- private bit tricks shared by the C core: popcount, in-word
 * select (portable and BMI2), prefetch, ISA dispatch helpers.
 *
 * Kernels that benefit from POPCNT/BMI2 are written once in a *_impl.h file
 * and included twice by their .c file: once with WV_SFX(x) = x##_portable and
 * an empty WV_TARGET, once (x86-64 only) with WV_SFX(x) = x##_bmi2 and
 * WV_TARGET = target("popcnt,bmi2"). The always-inline helpers below carry no
 * target of their own, so they take on the target of the kernel they are
 * inlined into (POPCNT when inlined into a _bmi2 kernel).
 */
#ifndef WV_BITS_H
#define WV_BITS_H

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#define WV_X86 1
#include <immintrin.h>
#else
#define WV_X86 0
#endif

#define WV_INLINE static inline __attribute__((always_inline))
#define WV_LIKELY(x) __builtin_expect(!!(x), 1)
#define WV_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define WV_PREFETCH(p) __builtin_prefetch((const void *)(p), 0, 0)

WV_INLINE unsigned wv_popcount(uint64_t x) { return (unsigned)__builtin_popcountll(x); }

/* Position of the r-th (0-based) set bit of x; requires r < popcount(x).
 * Portable: byte-wise skip with popcount, then a 256x8 table. */
extern uint8_t wv_select_in_byte[256 * 8]; /* filled by a load-time constructor */

/* Broadword in-word select (after Vigna, "Broadword implementation of
 * rank/select queries", WEA 2008): byte-wise prefix popcounts by SWAR and a
 * multiply, the byte found by a parallel compare, then a 256x8 table. No
 * branches, no BMI2. When inlined into a POPCNT kernel the one popcount
 * becomes an instruction. */
WV_INLINE unsigned wv_select64_portable(uint64_t x, unsigned r) {
    const uint64_t L8 = UINT64_C(0x0101010101010101), H8 = UINT64_C(0x8080808080808080);
    uint64_t s = x - ((x & UINT64_C(0xAAAAAAAAAAAAAAAA)) >> 1);
    s = (s & UINT64_C(0x3333333333333333)) + ((s >> 2) & UINT64_C(0x3333333333333333));
    s = ((s + (s >> 4)) & UINT64_C(0x0F0F0F0F0F0F0F0F)) * L8; /* byte i: ones in bytes 0..i */
    uint64_t geq = (((uint64_t)r * L8 | H8) - s) & H8;        /* bytes whose prefix <= r */
    unsigned place = wv_popcount(geq) * 8;
    unsigned byte_rank = r - (unsigned)(((s << 8) >> place) & 0xFF);
    return place + wv_select_in_byte[((x >> place) & 0xFF) * 8 + byte_rank];
}

#if WV_X86
__attribute__((target("bmi2"))) static inline unsigned wv_select64_bmi2(uint64_t x, unsigned r) {
    return (unsigned)__builtin_ctzll(_pdep_u64(1ULL << r, x));
}
#endif

/* ISA level chosen for this process (0 portable, 1 popcnt, 2 popcnt+bmi2). */
int wv_isa_level_internal(void);

#endif /* WV_BITS_H */
