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
 * Compact index (index = WV_BV_INDEX_COMPACT, format 1.2): the same five
 * arrays and the same scheme, with coarser blocks, for data that is mostly
 * decoded in bulk (a bulk extract needs one rank per tree node, not per
 * element) and where the index is a visible part of the stored size:
 *   blocks : one uint64 per 16384-bit block b: low 25 bits = ones in blocks
 *            [2^11*(b>>11), b) (relative to its 2^25-bit superblock), bits
 *            25..37, 38..50, 51..63 = popcounts of the first three 4096-bit
 *            sub-blocks of b; nblocks = ceil(nbits/16384) + 1.
 *   super  : one uint64 per 2^25-bit superblock; nsuper = (nblocks-1 >> 11) + 1.
 *   sel1/sel0 : samples every WV_BVC_SEL_SAMPLE ones / zeros.
 * Space: 0.39% for rank + 0.1% for select, about 0.49% of n. Rank reads one
 * entry and popcounts up to 63 words (one 4096-bit sub-block) instead of 7.
 *
 * **Warning**: rank(i) is defined for 0 <= i <= nbits; select1(k) for
 * k < ones, select0(k) for k < nbits - ones; anything else gives WV_ERANGE.
 * **Warning**: the structure borrows all five arrays; keep them alive and
 * unchanged.
 * ------------------------------------------------------------------------- */
#define WV_BV_BLOCK_BITS 2048
#define WV_BV_SUPER_BITS 4294967296
#define WV_BV_SEL_SAMPLE 4096
#define WV_BV_INDEX_FAST 0
#define WV_BV_INDEX_COMPACT 1
#define WV_BVC_BLOCK_BITS 16384
#define WV_BVC_SUPER_BITS 33554432
#define WV_BVC_SEL_SAMPLE 65536

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
    uint32_t index; /* WV_BV_INDEX_FAST (0) or WV_BV_INDEX_COMPACT (1) */
} wv_bv_t;

/* Array lengths (in uint64) for a bitvector of nbits bits with `ones` ones
 * and the given index kind (WV_BV_INDEX_FAST or WV_BV_INDEX_COMPACT). */
int wv_bv_layout(uint64_t nbits, uint64_t ones, uint32_t index, uint64_t *nwords, uint64_t *nblocks,
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

/* ---------------------------------------------------------------------------
 * Wavelet matrix (wavelet_matrix.c).
 *
 * After Claude, Navarro, Ordonez, "The wavelet matrix: An efficient wavelet
 * tree for large alphabets", Information Systems 47 (2015). A sequence of n
 * symbols below 2^L is stored as L bit levels; level l holds bit L-1-l (most
 * significant first) of every symbol, in the order obtained by stably
 * partitioning the previous level by its bit (zeros first). All levels live in
 * one rank/select bitvector `bv`: level l at bits [l*stride, l*stride + n),
 * stride = n rounded up to a multiple of 512 (padding bits are zero), so rank
 * inside a level is rank1(l*stride + i) - base[l].
 * Space: L*stride bits plus the bitvector index (4.7%, or 0.49% compact): about
 * n*L*1.047 bits (fast index). Query cost: access/rank O(L) ranks, select O(L) selects,
 * quantile / count_less / range_freq / prev/next value O(L) ranks, range_list
 * O(k L) for k reported values, extract(l, r) streams level by level
 * (O((r-l) L) sequential work plus O(nodes) ranks).
 *
 * **Warning**: positions i satisfy i < n (access) or i <= n (rank); ranges
 * need l <= r <= n; symbols >= 2^L have no occurrences (rank 0, select
 * WV_ERANGE). Out-of-range arguments give WV_ERANGE, never UB.
 * **Warning**: the structure borrows bv's arrays (see wv_bv_t).
 * Thread safety: read-only queries, any number of threads.
 * ------------------------------------------------------------------------- */
#define WV_WM_MAX_LEVELS 64
#define WV_LEVEL_ALIGN 512

typedef struct wv_wm {
    wv_bv_t bv;
    uint64_t n;
    uint64_t stride;
    uint32_t nlevels;
    uint32_t reserved;
    uint64_t zeros[64];
    uint64_t base[64];
} wv_wm_t;

/* stride and total bits of the level bitvector for n symbols, L levels. */
int wv_wm_layout(uint64_t n, uint32_t nlevels, uint64_t *stride, uint64_t *nbits);
/* Fill words (ceil(nbits/64) words, from wv_wm_layout) from seq (n unsigned
 * integers of `width` bytes: 1, 2, 4 or 8). O(n L) time, 2 n*width bytes of
 * temporary memory (malloc). WV_EINVAL if a symbol needs more than L bits. */
int wv_wm_build_bits(const void *seq, uint32_t width, uint64_t n, uint32_t nlevels,
                     uint64_t *words, uint64_t nwords);
/* Attach a built or loaded bitvector: checks the shape and that padding bits
 * are zero (WV_ECORRUPT otherwise) and fills zeros[] and base[]. Run
 * wv_bv_validate(bv) first on untrusted data. */
int wv_wm_init(wv_wm_t *wm, const wv_bv_t *bv, uint64_t n, uint32_t nlevels);
int wv_wm_size_bits(const wv_wm_t *wm, uint64_t *bits);

int wv_wm_access(const wv_wm_t *wm, uint64_t i, uint64_t *c);
int wv_wm_rank(const wv_wm_t *wm, uint64_t c, uint64_t i, uint64_t *r);
int wv_wm_select(const wv_wm_t *wm, uint64_t c, uint64_t k, uint64_t *pos);
/* k-th smallest (0-based) in [l, r) */
int wv_wm_quantile(const wv_wm_t *wm, uint64_t l, uint64_t r, uint64_t k, uint64_t *c);
/* number of values < x in [l, r) (any x) */
int wv_wm_count_less(const wv_wm_t *wm, uint64_t l, uint64_t r, uint64_t x, uint64_t *cnt);
/* number of values in [lo, hi) in [l, r) */
int wv_wm_range_freq(const wv_wm_t *wm, uint64_t l, uint64_t r, uint64_t lo, uint64_t hi,
                     uint64_t *cnt);
/* largest value < x (prev) / smallest value >= x (next) in [l, r);
 * WV_ENOTFOUND if there is none. */
int wv_wm_prev_value(const wv_wm_t *wm, uint64_t l, uint64_t r, uint64_t x, uint64_t *c);
int wv_wm_next_value(const wv_wm_t *wm, uint64_t l, uint64_t r, uint64_t x, uint64_t *c);
/* Distinct values in [lo, hi) occurring in [l, r), ascending, with counts.
 * Writes min(count, cap) pairs; *count is the total number. */
int wv_wm_range_list(const wv_wm_t *wm, uint64_t l, uint64_t r, uint64_t lo, uint64_t hi,
                     uint64_t *vals, uint64_t *cnts, uint64_t cap, uint64_t *count);

/* Batch forms (arrays of n queries; *bad = first offending query on
 * WV_ERANGE). prev/next write found[t] = 0 and out[t] = 0 where none. */
int wv_wm_access_batch(const wv_wm_t *wm, const uint64_t *i, size_t n, uint64_t *out,
                       size_t *bad);
int wv_wm_rank_batch(const wv_wm_t *wm, const uint64_t *c, const uint64_t *i, size_t n,
                     uint64_t *out, size_t *bad);
int wv_wm_select_batch(const wv_wm_t *wm, const uint64_t *c, const uint64_t *k, size_t n,
                       uint64_t *out, size_t *bad);
int wv_wm_quantile_batch(const wv_wm_t *wm, const uint64_t *l, const uint64_t *r,
                         const uint64_t *k, size_t n, uint64_t *out, size_t *bad);
int wv_wm_count_less_batch(const wv_wm_t *wm, const uint64_t *l, const uint64_t *r,
                           const uint64_t *x, size_t n, uint64_t *out, size_t *bad);
int wv_wm_range_freq_batch(const wv_wm_t *wm, const uint64_t *l, const uint64_t *r,
                           const uint64_t *lo, const uint64_t *hi, size_t n, uint64_t *out,
                           size_t *bad);
int wv_wm_prev_value_batch(const wv_wm_t *wm, const uint64_t *l, const uint64_t *r,
                           const uint64_t *x, size_t n, uint64_t *out, uint8_t *found,
                           size_t *bad);
int wv_wm_next_value_batch(const wv_wm_t *wm, const uint64_t *l, const uint64_t *r,
                           const uint64_t *x, size_t n, uint64_t *out, uint8_t *found,
                           size_t *bad);

/* Bulk extract of [l, r) into out (r-l unsigned integers of out_width bytes,
 * which must hold L bits). Decodes level by level, bottom-up, merging the
 * decoded children of every tree node under the control of the node's bits.
 * Workspace: tmp holds r-l elements of out_width bytes; ws holds ws_entries
 * entries of 8 uint64 each (wv_wm_extract_ws gives the number needed). */
int wv_wm_extract_ws(const wv_wm_t *wm, uint64_t l, uint64_t r, uint64_t *ws_entries);
int wv_wm_extract(const wv_wm_t *wm, uint64_t l, uint64_t r, void *out, uint32_t out_width,
                  void *tmp, uint64_t *ws, uint64_t ws_entries);

/* ---------------------------------------------------------------------------
 * Wavelet tree, balanced or Huffman-shaped (wavelet_tree.c, huffman.c).
 *
 * A pointerless, level-wise wavelet tree over a canonical prefix code: after
 * Grossi, Gupta, Vitter, "High-order entropy-compressed text indexes", SODA
 * 2003, and, for the Huffman shape, Makinen and Navarro, "Succinct suffix
 * arrays based on run-length encoding", Nordic J. Computing 12 (2005). Every
 * symbol gets a canonical code (lengths 1..L, L <= 32): the balanced shape
 * uses L = ceil(log2 sigma) bits for the sigma distinct symbols, in symbol
 * order (so range queries follow symbol order); the Huffman shape uses
 * length-limited Huffman code lengths (so the bits total sum f_c len_c <=
 * n (H0 + 1)). Level d holds bit d of the code of every element whose code is
 * longer than d, grouped by tree node (code prefix) in node order, in
 * sequence order inside a node. With canonical codes the leaves of each
 * level are its leftmost nodes, so a level stores only the nact[d] elements
 * still active, and no node pointers are needed: a node is found from its
 * parent with two ranks.
 * Layout: one bitvector `bv`, level d at bits [off[d], off[d] + nact[d]),
 * each level padded to a multiple of 512 bits (zero padding), or of 64 bits
 * when bv has the compact index (format 1.2: small trees then do not pay up
 * to 511 bits per level). Code tables:
 * syms (symbols in canonical order: by code length, then symbol), skey
 * (symbols ascending) and spos (canonical index of skey[i]); cnt[d] = number
 * of codes of length d.
 * Space: sum of code lengths (n H0 + n at most for Huffman, n ceil(log2
 * sigma) for balanced) + the bitvector index (4.7%, or 0.49% compact) + the
 * code tables (1-8 bytes per symbol stored, format 1.1).
 * Query cost: access O(len) ranks (3 per level), rank O(len) ranks, select
 * O(len) ranks and selects; extract streams level by level like the wavelet
 * matrix.
 *
 * **Warning**: positions and ranges as for the wavelet matrix; symbols that
 * do not occur have rank 0 and select gives WV_ERANGE.
 * **Warning**: the structure borrows bv's arrays and the three tables.
 * Thread safety: read-only queries, any number of threads.
 * ------------------------------------------------------------------------- */
#define WV_WT_MAX_LEVELS 32

typedef struct wv_wt {
    wv_bv_t bv;
    uint64_t n;
    uint64_t nsyms;
    uint32_t nlevels;
    uint32_t reserved;
    const uint64_t *syms;
    const uint64_t *skey;
    const uint32_t *spos;
    uint64_t cnt[33];
    uint64_t first[33];
    uint64_t idx[33];
    uint64_t nact[33];
    uint64_t off[34];
    uint64_t base[33];
    uint64_t nnodes[34];
} wv_wt_t;

/* Length-limited Huffman code lengths (maxlen <= 32) for nsyms frequencies
 * (all > 0); lens[i] in 1..maxlen. WV_EINVAL if 2^maxlen < nsyms. */
int wv_huffman_lengths(const uint64_t *freq, uint64_t nsyms, uint32_t maxlen, uint8_t *lens);
/* Level offsets and total bits from nact[0..L] (nact[L] = 0), for a level
 * bitvector with the given index kind (it sets the level alignment). */
int wv_wt_layout(const uint64_t *nact, uint32_t nlevels, uint32_t index, uint64_t *nbits);
/* Fill words from seq (n integers of `width` bytes). With lut != NULL the
 * canonical index of value v is lut[v] (v < lut_len); with lut == NULL seq
 * must hold canonical indices (width 4). cnt[0..L] code length counts, nact
 * from wv_wt_layout's input. Temporary memory 3 n * (1, 2 or 4) bytes. */
int wv_wt_build_bits(const void *seq, uint32_t width, uint64_t n, const uint32_t *lut,
                     uint64_t lut_len, const uint64_t *cnt, uint32_t nlevels, uint64_t nsyms,
                     const uint64_t *nact, uint32_t index, uint64_t *words, uint64_t nwords);
/* Attach and validate everything (code tables: Kraft, canonical order,
 * permutation; level sizes; every tree node against its parent's bits):
 * WV_ECORRUPT if anything is inconsistent. O(nsyms L + nodes) ranks. Run
 * wv_bv_validate(bv) first on untrusted data. */
/* counts[v] = occurrences of v in seq (n integers of `width` bytes), for
 * v <= maxv; WV_EINVAL if some value exceeds maxv. counts has maxv+1 entries
 * and is zeroed first. */
int wv_wt_histogram(const void *seq, uint32_t width, uint64_t n, uint64_t maxv, uint64_t *counts);
int wv_wt_init(wv_wt_t *wt, const wv_bv_t *bv, uint64_t n, uint32_t nlevels, const uint64_t *cnt,
               const uint64_t *nact, const uint64_t *syms, const uint64_t *skey,
               const uint32_t *spos, uint64_t nsyms);
int wv_wt_size_bits(const wv_wt_t *wt, uint64_t *bits);

int wv_wt_access(const wv_wt_t *wt, uint64_t i, uint64_t *c);
int wv_wt_rank(const wv_wt_t *wt, uint64_t c, uint64_t i, uint64_t *r);
int wv_wt_select(const wv_wt_t *wt, uint64_t c, uint64_t k, uint64_t *pos);
int wv_wt_access_batch(const wv_wt_t *wt, const uint64_t *i, size_t n, uint64_t *out,
                       size_t *bad);
int wv_wt_rank_batch(const wv_wt_t *wt, const uint64_t *c, const uint64_t *i, size_t n,
                     uint64_t *out, size_t *bad);
int wv_wt_select_batch(const wv_wt_t *wt, const uint64_t *c, const uint64_t *k, size_t n,
                       uint64_t *out, size_t *bad);
/* Bulk extract of [l, r) into out (out_width bytes per element). idx_width 0:
 * merge symbol values directly (tmp holds r-l elements of out_width bytes);
 * idx_width 1, 2 or 4 (< out_width, 2^(8 idx_width) >= nsyms): merge
 * canonical indices of idx_width bytes (tmp holds r-l of those, out serves as
 * the second buffer) then map them to symbols. ws as for wv_wm_extract. */
int wv_wt_extract_ws(const wv_wt_t *wt, uint64_t l, uint64_t r, uint64_t *ws_entries);
int wv_wt_extract(const wv_wt_t *wt, uint64_t l, uint64_t r, void *out, uint32_t out_width,
                  void *tmp, uint32_t idx_width, uint64_t *ws, uint64_t ws_entries);

/* ==== END wavelet matrix / wavelet tree section ==== */

/* ==== BEGIN field kernels section (fields.c): bulk bit-field merge/split used to
 * rebuild fixed-width words from decoded symbol streams ==== */

/* Rebuild elements [first, first + count) of n IEEE-like words (out_width
 * bytes: 2, 4 or 8; 1 + exp_bits + mant_bits = 8*out_width) into out[0..count)
 * from three stored fields:
 *   exponent: table[code(i)] (table: ntable uint16 values, each < 2^exp_bits;
 *             the "exponent" field may be wider than IEEE's, holding the top
 *             mantissa bits too);
 *   codes:    ncodes unsigned ints of code_width bytes (1 or 2) for the range,
 *             read in rows: with j = i - first, code(i) =
 *             codes[(j / block_len) * block_stride + j % block_len]
 *             (block_len = block_stride = count for a plain array; block_stride >
 *             block_len skips per-row delimiters of a RAS without a copy);
 *   sign and mantissa: raw = mant_bits+1 bits per element, the low 8*P bits in
 *             P = (mant_bits+1)/8 byte planes (planes[p*n + i] holds bits
 *             8p..8p+7 of element i; nplanes_bytes = P*n) and the remaining
 *             R = (mant_bits+1)%8 bits bit-packed LSB-first in top (element i
 *             at bits [i*R, i*R+R); top_bytes = ceil(n*R/8));
 *   out[i] = (raw >> mant_bits) << (W-1) | table[code(i)] << mant_bits
 *            | (raw & (2^mant_bits - 1)).
 * Integer operations only (bit-exact for every pattern). WV_ECORRUPT if a
 * code is >= ntable or a table entry does not fit exp_bits; WV_EINVAL for
 * inconsistent sizes (every index the rows reach must lie below ncodes).
 * O(count), no allocation, processed in L1-sized chunks; disjoint ranges may
 * run concurrently (threads decoding one tensor). */
int wv_fields_merge_float(const void *codes, uint32_t code_width, uint64_t ncodes,
                          uint64_t block_len, uint64_t block_stride, const uint16_t *table,
                          uint64_t ntable, uint32_t exp_bits, uint32_t mant_bits,
                          const uint8_t *planes, uint64_t nplanes_bytes, const uint8_t *top,
                          uint64_t top_bytes, uint64_t n, uint64_t first, void *out,
                          uint32_t out_width, uint64_t count);

/* Positions of the non-zeros of a gap-coded sparse tensor (the tuple extension's
 * distances): seq holds nseq codes (code_width 1, 2 or 4 bytes) of nblocks blocks,
 * each block's operand codes followed by the code `delim`. An operand code c <
 * ntable stands for the symbol table[c]; a symbol s < esc is a distance, s >= esc
 * an escape: b = s - esc <= 56 raw bits (LSB first, consumed in order from extra) give
 * distance esc + 2^b - 1 + bits (esc = UINT64_MAX: no escapes). With rice = r in 1..56
 * (and no escapes) every symbol is a quotient: the next r bits of extra are the low bits,
 * distance (s << r) | bits (Rice coding). Inside block j the
 * first operand sits at offset distance, every later one distance + 1 after the
 * previous; pos[i] = j * block_len + offset. WV_ECORRUPT if a code is neither an
 * operand nor the delimiter, an offset leaves its block, the escape bits run out
 * or are not all consumed (up to byte padding), or the counts of delimiters and
 * operands are not nblocks and npos. */
int wv_fields_gap_positions(const void *seq, uint32_t code_width, uint64_t nseq, uint64_t delim,
                            const uint64_t *table, uint64_t ntable, uint64_t esc, uint32_t rice,
                            const uint8_t *extra, uint64_t extra_bytes, uint64_t block_len,
                            uint64_t nblocks, int64_t *pos, uint64_t npos);

/* The same walk, scattering instead of listing: out (nblocks * block_len words of width
 * bytes: 1, 2, 4 or 8) is zeroed, then out[pos[k]] = vals[k] for the nvals operands, with
 * no position array. WV_ECORRUPT as for wv_fields_gap_positions (npos = nvals); a position
 * outside out is never written. */
int wv_fields_gap_scatter(const void *seq, uint32_t code_width, uint64_t nseq, uint64_t delim,
                          const uint64_t *table, uint64_t ntable, uint64_t esc, uint32_t rice,
                          const uint8_t *extra, uint64_t extra_bytes, uint64_t block_len,
                          uint64_t nblocks, const void *vals, uint64_t nvals, uint32_t width,
                          void *out);

/* The zero words of out (n words of width bytes: 1, 2, 4 or 8), in order, take their top
 * bit from the bit stream bits (LSB first, nbits bits in ceil(nbits / 8) bytes): zero k
 * becomes (bit k) << (8 * width - 1), e.g. -0.0 for a float's sign. The other words are
 * left alone. WV_ECORRUPT when out holds more zeros than nbits, or fewer (bits left over):
 * the caller learns that the stream and the words disagree. */
int wv_fields_zero_signs(void *out, uint64_t n, uint32_t width, const uint8_t *bits,
                         uint64_t nbits);

/* out[j] = table[code(first + j)] for j < count: a dictionary decode. codes and
 * their rows as for wv_fields_merge_float (code(i) = codes[(i / block_len) *
 * block_stride + i % block_len], i counted from the range start); table holds
 * ntable words of width bytes (1, 2, 4 or 8), out count such words.
 * WV_ECORRUPT if a code is >= ntable; WV_EINVAL for inconsistent sizes. */
int wv_fields_lookup(const void *codes, uint32_t code_width, uint64_t ncodes, uint64_t block_len,
                     uint64_t block_stride, const void *table, uint64_t ntable, uint32_t width,
                     void *out, uint64_t count);

/* Fused tree decode: the operands at tree positions [start, stop) of a wavelet
 * tree whose symbols are codes, extracted in cache-sized chunks and passed on
 * at once to wv_fields_merge_float (float words) or wv_fields_lookup (table
 * words), with no full-size code buffer and one call per range. Positions
 * below lead are not operands, nor (block > 0) is every (block+1)-th position
 * after them (a RAS: flag, then rows of block operands each followed by a
 * delimiter); operands past the first nelems (an end marker) are dropped.
 * Operand e is element e of the parts (planes/top hold nelems elements);
 * out receives out_count = ops(stop) - ops(start) words, ops(p) = the operands
 * below p, capped at nelems. The tree's largest symbol must fit 16 bits
 * (WV_EINVAL); WV_ECORRUPT as for the kernels. Allocates two chunk buffers. */
int wv_wt_decode_float(const wv_wt_t *wt, uint64_t start, uint64_t stop, uint64_t lead,
                       uint64_t block, uint64_t nelems, const uint16_t *table, uint64_t ntable,
                       uint32_t exp_bits, uint32_t mant_bits, const uint8_t *planes,
                       uint64_t nplanes_bytes, const uint8_t *top, uint64_t top_bytes, void *out,
                       uint32_t out_width, uint64_t out_count);
int wv_wt_decode_lookup(const wv_wt_t *wt, uint64_t start, uint64_t stop, uint64_t lead,
                        uint64_t block, uint64_t nelems, const void *table, uint64_t ntable,
                        uint32_t width, void *out, uint64_t out_count);

/* ==== END field kernels section ==== */

#endif /* WAVELET_H */
