/*
 * wavelet.h -- public C API of the succinct-compression core.
 *
 * This header is also the cffi cdef source (wavelet_c/build_ffi.py strips the
 * preprocessor lines and feeds the rest to ffi.cdef), so it must stay plain C
 * declarations: no macros with arguments, no inline bodies, no #if in the
 * declaration part.
 *
 * Conventions (see STYLE.md):
 *  - every function returns an int status (WV_OK or a negative WV_E* code);
 *    results go out through pointers;
 *  - bulk memory is *borrowed*: structures hold pointers into caller-owned
 *    arrays, which must stay alive and unchanged while the structure is used;
 *  - no allocation, printing, abort() or exit() in query paths;
 *  - every exported function validates its arguments and never trusts the
 *    caller: a bad position gives WV_ERANGE, a bad argument WV_EINVAL.
 *
 * Thread safety: all query functions are read-only on the structure and may be
 * called concurrently from any number of threads. Build functions write only
 * into the output arrays they are given.
 */
#ifndef WAVELET_H
#define WAVELET_H

#include <stddef.h>
#include <stdint.h>

#define WV_OK 0
#define WV_EINVAL -1
#define WV_ERANGE -2
#define WV_ENOMEM -3
#define WV_ECORRUPT -4
#define WV_ENOTFOUND -5

/* ---------------------------------------------------------------------------
 * Runtime ISA dispatch.
 *
 * Hot kernels exist in a portable build and (on x86-64) POPCNT and
 * POPCNT+BMI2 builds; the fastest one the CPU runs is chosen when the library
 * loads (BMI2 pdep is skipped on AMD before Zen 3, where it is microcoded).
 * wv_isa_max() gives the highest level the CPU can run; wv_isa_set() forces a
 * level (tests run the suite on every level).
 *   level 0: portable C (software popcount, broadword in-word select)
 *   level 1: x86-64 POPCNT (broadword in-word select)
 *   level 2: x86-64 POPCNT + BMI2 (pdep-based in-word select)
 * ------------------------------------------------------------------------- */
int wv_isa_get(int *level);
int wv_isa_max(int *level);
int wv_isa_set(int level);

/* ---------------------------------------------------------------------------
 * Bitvector with rank/select (bitvector.c).
 *
 * Layout ("poppy"-style interleaved counters, after Zhou, Andersen, Kaminsky,
 * "Space-Efficient, High-Performance Rank & Select Structures on Uncompressed
 * Bit Sequences", SEA 2013):
 *   words  : the bits, little-endian within each uint64 (bit i is
 *            (words[i/64] >> (i%64)) & 1); bits past nbits in the last word
 *            must be zero.
 *   blocks : one uint64 per 2048-bit block b: low 32 bits = number of ones in
 *            blocks [2^21*(b>>21), b) (relative to its 2^32-bit superblock),
 *            bits 32..41, 42..51, 52..61 = popcounts of the first three
 *            512-bit sub-blocks of b. nblocks = ceil(nbits/2048) + 1 (the last
 *            entry is a sentinel holding the total).
 *   super  : one uint64 per 2^32-bit superblock s: ones in [0, s*2^32).
 *            nsuper = (nblocks-1 >> 21) + 1.
 *   sel1   : block index holding the (j*WV_BV_SEL_SAMPLE)-th one (0-based),
 *            j = 0 .. nsel1-1, nsel1 = ceil(ones / WV_BV_SEL_SAMPLE) + 1; the last
 *            entry is nblocks-1.
 *   sel0   : the same for zeros.
 * Space: 64 bits per 2048 (3.125%) for rank, plus 64 bits per 4096 ones and
 * per 4096 zeros for select (1.56% of n in total): at most 4.7% of n.
 * Query cost: rank = one index entry + one 64-byte line of bits; select = a
 * sample, a binary search over (cached) block entries, one line of bits.
 *
 * **Warning**: rank(i) is defined for 0 <= i <= nbits; select1(k) for
 * k < ones, select0(k) for k < nbits - ones; anything else gives WV_ERANGE.
 * **Warning**: the structure borrows all five arrays; keep them alive and
 * unchanged.
 * ------------------------------------------------------------------------- */
#define WV_BV_BLOCK_BITS 2048
#define WV_BV_SUPER_BITS 4294967296
#define WV_BV_SEL_SAMPLE 4096

typedef struct wv_bv {
    const uint64_t *words;
    const uint64_t *blocks;
    const uint64_t *super;
    const uint64_t *sel1;
    const uint64_t *sel0;
    uint64_t nbits;
    uint64_t ones;
    uint64_t nwords;
    uint64_t nblocks;
    uint64_t nsuper;
    uint64_t nsel1;
    uint64_t nsel0;
} wv_bv_t;

/* Array lengths (in uint64) for a bitvector of nbits bits with `ones` ones. */
int wv_bv_layout(uint64_t nbits, uint64_t ones, uint64_t *nwords, uint64_t *nblocks,
                 uint64_t *nsuper, uint64_t *nsel1, uint64_t *nsel0);
/* Count ones in words[0..nwords); checks the padding bits past nbits are 0. */
int wv_bv_count(const uint64_t *words, uint64_t nbits, uint64_t *ones);
/* Pack nbits bools (one byte each, 0 or nonzero) into words (ceil(nbits/64)). */
int wv_bv_pack_bools(const uint8_t *bools, uint64_t nbits, uint64_t *words);
/* Build the index arrays. `bv` must have words/nbits/ones/n* set (from
 * wv_bv_layout) and the index pointers must point at writable arrays of those
 * lengths (passed separately so the struct can stay const). */
int wv_bv_build(wv_bv_t *bv, uint64_t *blocks, uint64_t *super, uint64_t *sel1, uint64_t *sel0);
/* Check that every array length and every index entry of bv is consistent
 * with its bits (recomputes the index, O(n), no allocation). WV_ECORRUPT if
 * not. Run this on anything loaded from an untrusted source before querying. */
int wv_bv_validate(const wv_bv_t *bv);
/* Space of the structure in bits (bits + index). */
int wv_bv_size_bits(const wv_bv_t *bv, uint64_t *bits);

int wv_bv_access(const wv_bv_t *bv, uint64_t i, int *bit);
int wv_bv_rank1(const wv_bv_t *bv, uint64_t i, uint64_t *r);
int wv_bv_rank0(const wv_bv_t *bv, uint64_t i, uint64_t *r);
int wv_bv_select1(const wv_bv_t *bv, uint64_t k, uint64_t *pos);
int wv_bv_select0(const wv_bv_t *bv, uint64_t k, uint64_t *pos);

/* Batch forms: n queries in, n results out. On WV_ERANGE, *bad is the index
 * of the first offending query and the outputs are unspecified. Misses of
 * consecutive queries are overlapped by software prefetching. */
int wv_bv_access_batch(const wv_bv_t *bv, const uint64_t *i, size_t n, uint8_t *out, size_t *bad);
int wv_bv_rank1_batch(const wv_bv_t *bv, const uint64_t *i, size_t n, uint64_t *out, size_t *bad);
int wv_bv_rank0_batch(const wv_bv_t *bv, const uint64_t *i, size_t n, uint64_t *out, size_t *bad);
int wv_bv_select1_batch(const wv_bv_t *bv, const uint64_t *k, size_t n, uint64_t *out, size_t *bad);
int wv_bv_select0_batch(const wv_bv_t *bv, const uint64_t *k, size_t n, uint64_t *out, size_t *bad);

/* ==== BEGIN wavelet matrix / wavelet tree section (wavelet_matrix.c, wavelet_tree.c,
 * huffman.c) ==== */

/* ==== END wavelet matrix / wavelet tree section ==== */

#endif /* WAVELET_H */
