/*
 * wavelet_matrix.cu -- bulk decode of a wavelet matrix, and reassembly of
 * float weights from an exponent stream plus raw sign/mantissa bits.
 *
 * wv_common.cuh is prepended by the loader.
 *
 * Wavelet matrix (Claude, Navarro, Ordonez, "The wavelet matrix: An efficient
 * wavelet tree for large alphabets", Information Systems 47, 2015): L levels of
 * n bits; level 0 holds the most significant bit of every value in sequence
 * order; level l+1 holds bit (L-2-l) of the values in the order obtained by a
 * stable partition of level l by its bit (zeros first). z_l = zeros in level l.
 * An element at position j of level l moves to
 *     dest_l(j) = rank0_l(j)              if B_l[j] == 0
 *               = z_l + rank1_l(j)        if B_l[j] == 1.
 *
 * Bulk decode, bottom-up, one launch per level (L launches):
 *     W_{L-1}[j] = B_{L-1}[j]
 *     W_l[j]     = (B_l[j] << (L-1-l)) | W_{l+1}[dest_l(j)]
 * and W_0 is the sequence. Each pass streams the bits and W_l, and gathers
 * W_{l+1} from two monotone streams (zeros and ones), so every access is
 * coalesced; a pass costs ~ (2*sizeof(SymT) + 1/8) bytes of traffic per
 * element and is bandwidth-bound. Each warp owns segments of 2048 positions
 * (one rank block); each lane takes one position of every 32-bit chunk and
 * carries the running rank1 itself (no shuffles, no shared memory: lanes are
 * independent, which is what lets the CPU harness emulate the kernel).
 *
 * A level is addressed as bits [off, off+n) of a bitvector (words, blocks,
 * super, nwords), so both layouts work: one bitvector per level (off = 0) or
 * all levels concatenated in one bitvector (off = l*n).
 *
 * The last pass (level 0) can be fused with float reassembly in dnn_adapter's
 * FloatCodec layout (wv_wm_level_float_k; fields in wv_common.cuh), so the
 * exponent codes never go to memory.
 *
 * Point queries (access, rank, select; one thread per query) and range extract
 * walk the levels top-down through a per-level descriptor table (WV_LV columns).
 */

#define WV_TID() ((wv_u64)blockIdx.x * blockDim.x + threadIdx.x)
#define WV_NTHREADS() ((wv_u64)gridDim.x * blockDim.x)
#define WV_SEG 2048ULL /* positions per warp segment */

/* ---- one wavelet-matrix level pass ------------------------------------------
 * Computes W_l[j] for all j < n into out (see the header). has_next = 0 for the
 * last level (next is then not read). blockDim.x must be a multiple of 32. */
template <typename SymT>
__global__ void wv_wm_level_k(const wv_u64 *words, const wv_u64 *blocks, const wv_u64 *super,
                              wv_u64 nwords, wv_u64 off, wv_u64 n, wv_u64 z, unsigned shift,
                              const SymT *next, int has_next, SymT *out) {
    unsigned lane = threadIdx.x & 31u;
    wv_u64 warp = WV_TID() >> 5, nwarps = WV_NTHREADS() >> 5;
    wv_u64 r1_off = wv_bv_rank1(words, blocks, super, off);
    wv_u32 lt = (1u << lane) - 1u; /* lanes below this one */
    for (wv_u64 p0 = warp * WV_SEG; p0 < n; p0 += nwarps * WV_SEG) {
        wv_u64 r1 = wv_bv_rank1(words, blocks, super, off + p0) - r1_off;
        wv_u64 pend = p0 + WV_SEG < n ? p0 + WV_SEG : n;
        for (wv_u64 p = p0; p < pend; p += 32) {
            wv_u32 chunk = wv_bits32(words, nwords, off + p);
            if (pend - p < 32)
                chunk &= (1u << (unsigned)(pend - p)) - 1u;
            wv_u64 j = p + lane;
            if (j < pend) {
                wv_u32 bit = (chunk >> lane) & 1u;
                wv_u64 ob = wv_popc32(chunk & lt);
                wv_u64 dest = bit ? z + r1 + ob : (p - r1) + (lane - ob);
                SymT v = (SymT)((SymT)bit << shift);
                if (has_next)
                    v |= next[dest];
                out[j] = v;
            }
            r1 += wv_popc32(chunk);
        }
    }
}

/* The level-0 pass fused with float reassembly (FloatCodec layout, see
 * wv_common.cuh): code = W_0[j], out[j] = word(table[code], raw bits of j).
 * next is W_1 (SymT codes). A code >= ntable gives 0 and is reported in *bad. */
template <typename SymT, typename OutT>
__global__ void wv_wm_level_float_k(const wv_u64 *words, const wv_u64 *blocks,
                                    const wv_u64 *super, wv_u64 nwords, wv_u64 off, wv_u64 n,
                                    wv_u64 z, unsigned shift, const SymT *next, int has_next,
                                    const wv_u16 *table, wv_u64 ntable, unsigned mant_bits,
                                    const wv_u8 *planes, unsigned nplanes, const wv_u8 *top,
                                    unsigned rem, OutT *out, wv_u64 *bad) {
    const unsigned wbits = 8u * (unsigned)sizeof(OutT);
    unsigned lane = threadIdx.x & 31u;
    wv_u64 warp = WV_TID() >> 5, nwarps = WV_NTHREADS() >> 5;
    wv_u64 r1_off = wv_bv_rank1(words, blocks, super, off);
    wv_u32 lt = (1u << lane) - 1u;
    for (wv_u64 p0 = warp * WV_SEG; p0 < n; p0 += nwarps * WV_SEG) {
        wv_u64 r1 = wv_bv_rank1(words, blocks, super, off + p0) - r1_off;
        wv_u64 pend = p0 + WV_SEG < n ? p0 + WV_SEG : n;
        for (wv_u64 p = p0; p < pend; p += 32) {
            wv_u32 chunk = wv_bits32(words, nwords, off + p);
            if (pend - p < 32)
                chunk &= (1u << (unsigned)(pend - p)) - 1u;
            wv_u64 j = p + lane;
            if (j < pend) {
                wv_u32 bit = (chunk >> lane) & 1u;
                wv_u64 ob = wv_popc32(chunk & lt);
                wv_u64 dest = bit ? z + r1 + ob : (p - r1) + (lane - ob);
                wv_u64 c = (wv_u64)bit << shift;
                if (has_next)
                    c |= (wv_u64)next[dest];
                if (c >= ntable) {
                    out[j] = 0;
                    atomicMin(bad, j);
                } else {
                    wv_u64 raw = wv_float_raw(planes, nplanes, top, rem, n, j);
                    out[j] = (OutT)wv_float_word(raw, (wv_u64)WV_LDG(table + c), mant_bits,
                                                 wbits);
                }
            }
            r1 += wv_popc32(chunk);
        }
    }
}

/* ---- point queries (batch) and range extract -----------------------------------
 * One thread per query, top-down through the L levels. Level l is described by
 * row l of a table lv[L][WV_LV] of u64: words, blocks, super pointers; nwords;
 * off (bit offset of the level in its bitvector); z (zeros in the level);
 * rank1(off); sel1, sel0 pointers; nblocks. Bad queries (position out of range,
 * select of a missing occurrence) give ~0 and are reported through *bad (the
 * caller raises IndexError for the first one, as the C core does). */
#define WV_LV 10

WV_HD wv_u64 wv_wm_bit(const wv_u64 *d, wv_u64 pos) {
    const wv_u64 *words = (const wv_u64 *)d[0];
    wv_u64 g = d[4] + pos;
    return (WV_LDG(words + (g >> 6)) >> (g & 63)) & 1ULL;
}

/* ones in [0, pos) of a level (pos <= n) */
WV_HD wv_u64 wv_wm_r1(const wv_u64 *d, wv_u64 pos) {
    return wv_bv_rank1((const wv_u64 *)d[0], (const wv_u64 *)d[1], (const wv_u64 *)d[2],
                       d[4] + pos) -
           d[6];
}

WV_HD wv_u64 wv_wm_access_one(const wv_u64 *lv, unsigned L, wv_u64 pos) {
    wv_u64 v = 0;
    for (unsigned l = 0; l < L; l++) {
        const wv_u64 *d = lv + (wv_u64)l * WV_LV;
        wv_u64 bit = wv_wm_bit(d, pos);
        v = (v << 1) | bit;
        if (l + 1 < L) {
            wv_u64 r1 = wv_wm_r1(d, pos);
            pos = bit ? d[5] + r1 : pos - r1;
        }
    }
    return v;
}

template <typename SymT>
__global__ void wv_wm_access_k(const wv_u64 *lv, unsigned L, wv_u64 n, const wv_u64 *q,
                               wv_u64 nq, SymT *out, wv_u64 *bad) {
    for (wv_u64 t = WV_TID(); t < nq; t += WV_NTHREADS()) {
        wv_u64 pos = q[t];
        if (pos >= n) {
            out[t] = (SymT)WV_U64_MAX;
            atomicMin(bad, t);
            continue;
        }
        out[t] = (SymT)wv_wm_access_one(lv, L, pos);
    }
}

/* out[t] = symbol at l + t for t < m (the caller checks l + m <= n). Consecutive
 * lanes take consecutive positions, so at every level their rank lookups fall in
 * at most a few runs of the same index entries and lines (cache hits). */
template <typename SymT>
__global__ void wv_wm_extract_k(const wv_u64 *lv, unsigned L, wv_u64 l, wv_u64 m, SymT *out) {
    for (wv_u64 t = WV_TID(); t < m; t += WV_NTHREADS())
        out[t] = (SymT)wv_wm_access_one(lv, L, l + t);
}

/* symbols >= 2^L do not occur (the C core's wm_sym_ok) */
WV_HD int wv_wm_sym_ok(unsigned L, wv_u64 c) { return L >= 64 || (c >> L) == 0; }

/* rank(c, i): occurrences of c[t] in [0, i[t]); i > n is a bad query, a symbol
 * that cannot occur has rank 0 (as in wavelet_c/wv_wm_impl.h). */
extern "C" __global__ void wv_wm_rank_k(const wv_u64 *lv, unsigned L, wv_u64 n, const wv_u64 *c,
                             const wv_u64 *q, wv_u64 nq, wv_u64 *out, wv_u64 *bad) {
    for (wv_u64 t = WV_TID(); t < nq; t += WV_NTHREADS()) {
        wv_u64 i = q[t], sym = c[t];
        if (i > n) {
            out[t] = WV_U64_MAX;
            atomicMin(bad, t);
            continue;
        }
        if (!wv_wm_sym_ok(L, sym)) {
            out[t] = 0;
            continue;
        }
        wv_u64 s = 0, e = i;
        for (unsigned l = 0; l < L; l++) {
            const wv_u64 *d = lv + (wv_u64)l * WV_LV;
            unsigned b = (unsigned)(sym >> (L - 1 - l)) & 1u;
            wv_u64 rs = wv_wm_r1(d, s), re = wv_wm_r1(d, e);
            if (b) {
                s = d[5] + rs;
                e = d[5] + re;
            } else {
                s -= rs;
                e -= re;
            }
        }
        out[t] = e - s;
    }
}

/* select(c, k): position of the k-th (0-based) c; bad when c occurs k times or
 * fewer. Down the levels to c's range, then back up with selects on each level
 * (global select on the level's bitvector, re-based to the level). */
extern "C" __global__ void wv_wm_select_k(const wv_u64 *lv, unsigned L, wv_u64 n, const wv_u64 *c,
                               const wv_u64 *q, wv_u64 nq, wv_u64 *out, wv_u64 *bad) {
    for (wv_u64 t = WV_TID(); t < nq; t += WV_NTHREADS()) {
        wv_u64 k = q[t], sym = c[t];
        if (!wv_wm_sym_ok(L, sym) || k >= n) {
            out[t] = WV_U64_MAX;
            atomicMin(bad, t);
            continue;
        }
        wv_u64 s = 0, e = n;
        for (unsigned l = 0; l < L; l++) {
            const wv_u64 *d = lv + (wv_u64)l * WV_LV;
            unsigned b = (unsigned)(sym >> (L - 1 - l)) & 1u;
            wv_u64 rs = wv_wm_r1(d, s), re = wv_wm_r1(d, e);
            if (b) {
                s = d[5] + rs;
                e = d[5] + re;
            } else {
                s -= rs;
                e -= re;
            }
        }
        if (k >= e - s) {
            out[t] = WV_U64_MAX;
            atomicMin(bad, t);
            continue;
        }
        wv_u64 p = s + k;
        for (unsigned l = L; l-- > 0;) {
            const wv_u64 *d = lv + (wv_u64)l * WV_LV;
            const wv_u64 *words = (const wv_u64 *)d[0];
            const wv_u64 *blocks = (const wv_u64 *)d[1];
            const wv_u64 *super = (const wv_u64 *)d[2];
            unsigned b = (unsigned)(sym >> (L - 1 - l)) & 1u;
            wv_u64 gk = b ? d[6] + (p - d[5]) : (d[4] - d[6]) + p;
            const wv_u64 *samp = (const wv_u64 *)(b ? d[7] : d[8]);
            wv_u64 blk = wv_bv_find_block(blocks, super, samp, d[9], gk, (int)b);
            p = wv_bv_select_in_block(words, blocks, super, d[3], blk, gk, (int)b) - d[4];
        }
        out[t] = p;
    }
}

/* Explicit instantiations; keep in sync with wavelet/cuda/_module.py (a test
 * checks both directions). */
#define WV_INST_LEVEL(T)                                                                       \
    template __global__ void wv_wm_level_k<T>(const wv_u64 *, const wv_u64 *, const wv_u64 *,  \
                                              wv_u64, wv_u64, wv_u64, wv_u64, unsigned,        \
                                              const T *, int, T *);
WV_INST_LEVEL(wv_u8)
WV_INST_LEVEL(wv_u16)
WV_INST_LEVEL(wv_u32)
WV_INST_LEVEL(wv_u64)

#define WV_INST_ACCESS(T)                                                                      \
    template __global__ void wv_wm_access_k<T>(const wv_u64 *, unsigned, wv_u64, const wv_u64 *, \
                                               wv_u64, T *, wv_u64 *);                         \
    template __global__ void wv_wm_extract_k<T>(const wv_u64 *, unsigned, wv_u64, wv_u64, T *);
WV_INST_ACCESS(wv_u8)
WV_INST_ACCESS(wv_u16)
WV_INST_ACCESS(wv_u32)
WV_INST_ACCESS(wv_u64)

#define WV_INST_FLOAT(S, O)                                                                    \
    template __global__ void wv_wm_level_float_k<S, O>(                                        \
        const wv_u64 *, const wv_u64 *, const wv_u64 *, wv_u64, wv_u64, wv_u64, wv_u64,        \
        unsigned, const S *, int, const wv_u16 *, wv_u64, unsigned, const wv_u8 *, unsigned,   \
        const wv_u8 *, unsigned, O *, wv_u64 *);
WV_INST_FLOAT(wv_u8, wv_u16)
WV_INST_FLOAT(wv_u8, wv_u32)
WV_INST_FLOAT(wv_u8, wv_u64)
WV_INST_FLOAT(wv_u16, wv_u16)
WV_INST_FLOAT(wv_u16, wv_u32)
WV_INST_FLOAT(wv_u16, wv_u64)
