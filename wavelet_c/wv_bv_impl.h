/*
 * wv_bv_impl.h -- bitvector query kernels, included twice per translation
 * unit (see wv_bits.h): once portable, once for POPCNT+BMI2. Requires the
 * macros WV_SFX(name), WV_TARGET and WV_SELECT64 to be defined by the includer.
 *
 * The inline functions here trust their arguments (the exported wrappers in
 * bitvector.c validate positions first); other structures built on the
 * bitvector (wavelet matrix/tree) include this file to get inlined rank and
 * select in their own kernels.
 */
#include "wavelet.h"
#include "wv_bits.h"

#ifndef WV_BV_GEOM_DEFINED
#define WV_BV_GEOM_DEFINED
/* Geometry of the two index kinds (wavelet.h): log2 of the block bits, log2 of
 * the sub-block bits, width of a sub-block count, width of the relative count,
 * log2 of the blocks per superblock, log2 of the select sampling rate. */
#define WV_BVF_BSHIFT 11
#define WV_BVF_SSHIFT 9
#define WV_BVF_CBITS 10
#define WV_BVF_RBITS 32
#define WV_BVF_SPB 21
#define WV_BVF_SEL 12
#define WV_BVC_BSHIFT 14
#define WV_BVC_SSHIFT 12
#define WV_BVC_CBITS 13
#define WV_BVC_RBITS 25
#define WV_BVC_SPB 11
#define WV_BVC_SEL 16
/* block-entry and select-sample shifts of bv (for prefetch addresses) */
#define WV_BV_BSHIFT(bv) ((bv)->index ? WV_BVC_BSHIFT : WV_BVF_BSHIFT)
#define WV_BV_SELSHIFT(bv) ((bv)->index ? WV_BVC_SEL : WV_BVF_SEL)
#endif

/* ones in [0, b * block bits) */
WV_INLINE WV_TARGET uint64_t WV_SFX(wv_bv_block_rank)(const wv_bv_t *bv, uint64_t b) {
    if (bv->index)
        return bv->super[b >> WV_BVC_SPB] + (bv->blocks[b] & ((UINT64_C(1) << WV_BVC_RBITS) - 1));
    return bv->super[b >> 21] + (bv->blocks[b] & 0xFFFFFFFFu);
}

/* ones in w[0..m) (four independent sums, so the popcounts overlap) */
WV_INLINE WV_TARGET uint64_t WV_SFX(wv_popcount_run)(const uint64_t *w, unsigned m) {
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    unsigned k = 0;
    for (; k + 4 <= m; k += 4) {
        a0 += wv_popcount(w[k]);
        a1 += wv_popcount(w[k + 1]);
        a2 += wv_popcount(w[k + 2]);
        a3 += wv_popcount(w[k + 3]);
    }
    for (; k < m; k++)
        a0 += wv_popcount(w[k]);
    return a0 + a1 + a2 + a3;
}

/* rank1(i) on the compact index: entry, masked sub-block counts, then the
 * words of the 4096-bit sub-block between i and the nearer end of it: from
 * its start (at most 32 words; never past the array, the word holding i
 * exists whenever i % 64 != 0), or back from its end, whose count is the next
 * sub-block's start (or the next block's entry; every block has one, the last
 * a sentinel) when the sub-block lies wholly inside the array. */
WV_INLINE WV_TARGET uint64_t WV_SFX(wv_bvc_rank1_u)(const wv_bv_t *bv, uint64_t i) {
    uint64_t b = i >> WV_BVC_BSHIFT;
    uint64_t e = bv->blocks[b];
    const uint64_t cm = (UINT64_C(1) << WV_BVC_CBITS) - 1;
    uint64_t r = bv->super[b >> WV_BVC_SPB] + (e & ((UINT64_C(1) << WV_BVC_RBITS) - 1));
    uint64_t sub = (i >> WV_BVC_SSHIFT) & 3;
    uint64_t c0 = (e >> WV_BVC_RBITS) & cm, c1 = (e >> (WV_BVC_RBITS + WV_BVC_CBITS)) & cm,
             c2 = (e >> (WV_BVC_RBITS + 2 * WV_BVC_CBITS)) & cm;
    r += (c0 & -(uint64_t)(sub > 0)) + (c1 & -(uint64_t)(sub > 1)) + (c2 & -(uint64_t)(sub > 2));
    const unsigned sw = 1u << (WV_BVC_SSHIFT - 6); /* words per sub-block */
    uint64_t w0 = (i >> WV_BVC_SSHIFT) << (WV_BVC_SSHIFT - 6);
    const uint64_t *w = bv->words + w0;
    unsigned full = (unsigned)((i >> 6) & (sw - 1));
    if (full >= sw / 2 && w0 + sw <= bv->nwords) {
        uint64_t end = sub < 3 ? r + ((e >> (WV_BVC_RBITS + WV_BVC_CBITS * sub)) & cm)
                               : WV_SFX(wv_bv_block_rank)(bv, b + 1);
        return end - WV_SFX(wv_popcount_run)(w + full + 1, sw - full - 1) -
               wv_popcount(w[full] >> (i & 63));
    }
    r += WV_SFX(wv_popcount_run)(w, full);
    if (i & 63)
        r += wv_popcount(w[full] & ((UINT64_C(1) << (i & 63)) - 1));
    return r;
}

/* rank1(i), 0 <= i <= nbits. Branch-free: the sub-block counts are summed
 * with masks and all 8 words of the 512-bit line are popcounted under masks
 * (words past the end of the array are never read). */
WV_INLINE WV_TARGET uint64_t WV_SFX(wv_bv_rank1_u)(const wv_bv_t *bv, uint64_t i) {
    if (WV_UNLIKELY(bv->index))
        return WV_SFX(wv_bvc_rank1_u)(bv, i);
    uint64_t b = i >> 11;
    uint64_t e = bv->blocks[b];
    uint64_t r = bv->super[b >> 21] + (e & 0xFFFFFFFFu);
    uint64_t sub = (i >> 9) & 3;
    uint64_t c0 = (e >> 32) & 0x3FF, c1 = (e >> 42) & 0x3FF, c2 = (e >> 52) & 0x3FF;
    r += (c0 & -(uint64_t)(sub > 0)) + (c1 & -(uint64_t)(sub > 1)) + (c2 & -(uint64_t)(sub > 2));
    uint64_t wi = i >> 6, w0 = (i >> 9) << 3;
    const uint64_t *w = bv->words + w0;
    uint64_t full = wi - w0; /* whole words before i in this line, 0..7 */
    if (WV_LIKELY(w0 + 8 <= bv->nwords)) {
        uint64_t partial = (UINT64_C(1) << (i & 63)) - 1;
        for (unsigned k = 0; k < 8; k++) {
            uint64_t m = k < full ? ~UINT64_C(0) : (k == full ? partial : 0);
            r += wv_popcount(w[k] & m);
        }
    } else {
        for (uint64_t k = 0; k < full; k++)
            r += wv_popcount(w[k]);
        if (i & 63)
            r += wv_popcount(w[full] & ((UINT64_C(1) << (i & 63)) - 1));
    }
    return r;
}

WV_INLINE WV_TARGET int WV_SFX(wv_bv_access_u)(const wv_bv_t *bv, uint64_t i) {
    return (int)((bv->words[i >> 6] >> (i & 63)) & 1);
}

/* Block b such that ones_before(b) <= k < ones_before(b+1); for one == 0 the
 * same over zeros. lo/hi from the samples: answer in [lo, hi). */
WV_INLINE WV_TARGET uint64_t WV_SFX(wv_bv_find_block)(const wv_bv_t *bv, uint64_t k, int one) {
    const uint64_t *samp = one ? bv->sel1 : bv->sel0;
    const uint64_t bbits = UINT64_C(1) << WV_BV_BSHIFT(bv);
    uint64_t j = k >> WV_BV_SELSHIFT(bv);
    uint64_t lo = samp[j], hi = samp[j + 1] + 1; /* candidate blocks [lo, hi) */
    if (hi > bv->nblocks - 1)
        hi = bv->nblocks - 1;
    /* binary search for the last block in [lo, hi) with count_before <= k */
    while (hi - lo > 8) {
        uint64_t mid = lo + (hi - lo) / 2;
        uint64_t c = WV_SFX(wv_bv_block_rank)(bv, mid);
        if (!one)
            c = mid * bbits - c;
        if (c <= k)
            lo = mid;
        else
            hi = mid;
    }
    /* at most 8 candidates left: a fixed-length branch-free count of those
     * with count_before <= k (monotone), clamped to stay inside [lo, hi) */
    uint64_t add = 0, last = hi - 1;
    for (uint64_t d = 1; d < 8; d++) {
        uint64_t b = lo + d;
        uint64_t in = b <= last;
        b = in ? b : last;
        uint64_t c = WV_SFX(wv_bv_block_rank)(bv, b);
        if (!one)
            c = b * bbits - c;
        add += in & (c <= k);
    }
    return lo + add;
}

/* Compact index: the first word of the 4096-bit sub-block of block b that holds the k-th one
 * (zero), and in *rem the rank of that bit inside the sub-block. */
WV_INLINE WV_TARGET uint64_t WV_SFX(wv_bvc_sub_block)(const wv_bv_t *bv, uint64_t b, uint64_t k,
                                                  int one, uint64_t *rem) {
    const uint64_t cm = (UINT64_C(1) << WV_BVC_CBITS) - 1, sbits = UINT64_C(1) << WV_BVC_SSHIFT;
    uint64_t e = bv->blocks[b];
    uint64_t before = WV_SFX(wv_bv_block_rank)(bv, b);
    if (!one)
        before = (b << WV_BVC_BSHIFT) - before;
    uint64_t r = k - before, sub = 0;
    for (; sub < 3; sub++) {
        uint64_t c = (e >> (WV_BVC_RBITS + WV_BVC_CBITS * sub)) & cm;
        if (!one)
            c = sbits - c;
        if (r < c)
            break;
        r -= c;
    }
    *rem = r;
    return (b << (WV_BVC_BSHIFT - 6)) + (sub << (WV_BVC_SSHIFT - 6));
}

/* Position of the r-th one (zero) in words [w0, w0 + nw), or UINT64_MAX. */
WV_INLINE WV_TARGET uint64_t WV_SFX(wv_select_scan)(const wv_bv_t *bv, uint64_t w0, uint64_t nw,
                                                    uint64_t r, int one) {
    for (uint64_t k2 = 0; k2 < nw; k2++) {
        uint64_t x = one ? bv->words[w0 + k2] : ~bv->words[w0 + k2];
        unsigned c = wv_popcount(x);
        if (r < c)
            return (w0 + k2) * 64 + WV_SELECT64(x, (unsigned)r);
        r -= c;
    }
    return UINT64_MAX;
}

/* Compact index: the answer inside the sub-block (at most 64 words, none past the array). */
WV_INLINE WV_TARGET uint64_t WV_SFX(wv_bvc_scan_sub)(const wv_bv_t *bv, uint64_t w0, uint64_t r,
                                                 int one) {
    const uint64_t sw = UINT64_C(1) << (WV_BVC_SSHIFT - 6);
    uint64_t left = bv->nwords > w0 ? bv->nwords - w0 : 0;
    return WV_SFX(wv_select_scan)(bv, w0, left < sw ? left : sw, r, one);
}

/* Finish select inside block b: k is the rank of the wanted bit among the
 * ones (zeros) of the whole vector. */
WV_INLINE WV_TARGET uint64_t WV_SFX(wv_bv_select_in_block)(const wv_bv_t *bv, uint64_t b, uint64_t k,
                                                 int one) {
    if (bv->index) {
        uint64_t r, w0 = WV_SFX(wv_bvc_sub_block)(bv, b, k, one, &r);
        return WV_SFX(wv_bvc_scan_sub)(bv, w0, r, one);
    }
    uint64_t e = bv->blocks[b];
    uint64_t before = WV_SFX(wv_bv_block_rank)(bv, b);
    if (!one)
        before = b * WV_BV_BLOCK_BITS - before;
    uint64_t r = k - before;
    unsigned sub = 0;
    for (; sub < 3; sub++) {
        uint64_t c = (e >> (32 + 10 * sub)) & 0x3FF;
        if (!one)
            c = 512 - c;
        if (r < c)
            break;
        r -= c;
    }
    const uint64_t *w = bv->words + b * 32 + sub * 8;
    uint64_t nwords_left = bv->nwords - (b * 32 + sub * 8);
    for (unsigned k2 = 0; k2 < 8 && k2 < nwords_left; k2++) {
        uint64_t x = one ? w[k2] : ~w[k2];
        unsigned c = wv_popcount(x);
        if (r < c)
            return b * WV_BV_BLOCK_BITS + sub * 512 + k2 * 64 + WV_SELECT64(x, (unsigned)r);
        r -= c;
    }
    return UINT64_MAX; /* unreachable on a validated structure */
}

WV_INLINE WV_TARGET uint64_t WV_SFX(wv_bv_select_u)(const wv_bv_t *bv, uint64_t k, int one) {
    uint64_t b = WV_SFX(wv_bv_find_block)(bv, k, one);
    return WV_SFX(wv_bv_select_in_block)(bv, b, k, one);
}

#ifndef WV_BV_IMPL_NO_BATCH
/* out-of-line single-query entry points (the exported functions dispatch here) */
WV_TARGET static uint64_t WV_SFX(wv_bv_rank1_one)(const wv_bv_t *bv, uint64_t i) {
    return WV_SFX(wv_bv_rank1_u)(bv, i);
}
WV_TARGET static uint64_t WV_SFX(wv_bv_select_one)(const wv_bv_t *bv, uint64_t k, int one) {
    return WV_SFX(wv_bv_select_u)(bv, k, one);
}

#ifndef WV_BATCH_PF
#define WV_BATCH_PF 16 /* prefetch distance, in queries */
#endif

WV_TARGET static int WV_SFX(wv_bv_rank_batch)(const wv_bv_t *bv, const uint64_t *q, size_t n,
                                              uint64_t *out, size_t *bad, int one) {
    uint64_t nb = bv->nbits;
    for (size_t t = 0; t < n; t++) {
        if (WV_UNLIKELY(q[t] > nb)) {
            *bad = t;
            return WV_ERANGE;
        }
    }
    for (size_t t = 0; t < n; t++) {
        if (t + WV_BATCH_PF < n) {
            uint64_t p = q[t + WV_BATCH_PF];
            WV_PREFETCH(bv->blocks + (p >> WV_BV_BSHIFT(bv)));
            if (bv->index) { /* the lines the compact rank will count (toward the nearer end) */
                uint64_t w = p >> 6, s0 = (p >> WV_BVC_SSHIFT) << (WV_BVC_SSHIFT - 6);
                uint64_t sw = UINT64_C(1) << (WV_BVC_SSHIFT - 6);
                uint64_t from = w - s0 >= sw / 2 ? w : s0, to = w - s0 >= sw / 2 ? s0 + sw : w + 1;
                for (uint64_t x = from & ~UINT64_C(7); x < to; x += 8)
                    WV_PREFETCH(bv->words + x);
            } else {
                WV_PREFETCH(bv->words + ((p >> 9) << 3));
            }
        }
        uint64_t r = WV_SFX(wv_bv_rank1_u)(bv, q[t]);
        out[t] = one ? r : q[t] - r;
    }
    return WV_OK;
}

WV_TARGET static int WV_SFX(wv_bv_access_batch)(const wv_bv_t *bv, const uint64_t *q, size_t n,
                                                uint8_t *out, size_t *bad) {
    uint64_t nb = bv->nbits;
    for (size_t t = 0; t < n; t++) {
        if (WV_UNLIKELY(q[t] >= nb)) {
            *bad = t;
            return WV_ERANGE;
        }
    }
    for (size_t t = 0; t < n; t++) {
        if (t + WV_BATCH_PF < n)
            WV_PREFETCH(bv->words + (q[t + WV_BATCH_PF] >> 6));
        out[t] = (uint8_t)WV_SFX(wv_bv_access_u)(bv, q[t]);
    }
    return WV_OK;
}

#endif /* WV_BV_IMPL_NO_BATCH */

/* Select stages (also used by the wavelet matrix batch select). */
WV_INLINE WV_TARGET void WV_SFX(wv_sel_stage_a)(const wv_bv_t *bv, const uint64_t *samp,
                                                const uint64_t *q, size_t m) {
    for (size_t t = 0; t < m; t++) {
        const uint64_t *e = bv->blocks + samp[q[t] >> WV_BV_SELSHIFT(bv)];
        WV_PREFETCH(e);
        WV_PREFETCH(e + 7);
    }
}

WV_INLINE WV_TARGET void WV_SFX(wv_sel_stage_b)(const wv_bv_t *bv, const uint64_t *q, size_t m,
                                                int one, uint64_t *wpos, uint64_t *rem) {
    if (bv->index) { /* compact: the 4096-bit sub-block, whose 8 lines are prefetched */
        for (size_t t = 0; t < m; t++) {
            uint64_t b = WV_SFX(wv_bv_find_block)(bv, q[t], one);
            wpos[t] = WV_SFX(wv_bvc_sub_block)(bv, b, q[t], one, &rem[t]);
            for (unsigned x = 0; x < (1u << (WV_BVC_SSHIFT - 6)); x += 8)
                WV_PREFETCH(bv->words + wpos[t] + x);
        }
        return;
    }
    for (size_t t = 0; t < m; t++) {
        uint64_t k = q[t];
        uint64_t b = WV_SFX(wv_bv_find_block)(bv, k, one);
        uint64_t e = bv->blocks[b];
        uint64_t before = WV_SFX(wv_bv_block_rank)(bv, b);
        if (!one)
            before = b * WV_BV_BLOCK_BITS - before;
        uint64_t r = k - before;
        uint64_t c0 = (e >> 32) & 0x3FF, c1 = (e >> 42) & 0x3FF, c2 = (e >> 52) & 0x3FF;
        if (!one) {
            c0 = 512 - c0;
            c1 = 512 - c1;
            c2 = 512 - c2;
        }
        uint64_t p1 = c0, p2 = c0 + c1, p3 = c0 + c1 + c2;
        uint64_t sub = (r >= p1) + (r >= p2) + (r >= p3);
        r -= (p1 & -(uint64_t)(sub == 1)) + (p2 & -(uint64_t)(sub == 2)) +
             (p3 & -(uint64_t)(sub == 3));
        wpos[t] = b * 32 + sub * 8;
        rem[t] = r;
        WV_PREFETCH(bv->words + wpos[t]);
    }
}

WV_INLINE WV_TARGET void WV_SFX(wv_sel_stage_c)(const wv_bv_t *bv, size_t m, int one,
                                                const uint64_t *wpos, const uint64_t *rem,
                                                uint64_t *out) {
    if (bv->index) { /* compact: scan the sub-block's (at most 64) words */
        for (size_t t = 0; t < m; t++)
            out[t] = WV_SFX(wv_bvc_scan_sub)(bv, wpos[t], rem[t], one);
        return;
    }
    for (size_t t = 0; t < m; t++) {
        const uint64_t *w = bv->words + wpos[t];
        uint64_t left = bv->nwords - wpos[t], r = rem[t], res = UINT64_MAX;
        if (WV_LIKELY(left >= 8)) {
            /* branch-free: prefix popcounts of the 8 words, pick the word */
            uint64_t acc = 0, widx = 0, before = 0;
            for (unsigned k2 = 0; k2 < 8; k2++) {
                uint64_t x = one ? w[k2] : ~w[k2];
                uint64_t nacc = acc + wv_popcount(x);
                uint64_t le = nacc <= r; /* the answer is after word k2 */
                widx += le;
                before += (nacc - acc) & -le;
                acc = nacc;
            }
            if (WV_LIKELY(widx < 8)) {
                uint64_t x = one ? w[widx] : ~w[widx];
                res = (wpos[t] + widx) * 64 + WV_SELECT64(x, (unsigned)(r - before));
            }
        } else {
            res = WV_SFX(wv_select_scan)(bv, wpos[t], left, r, one);
        }
        out[t] = res;
    }
}

#ifndef WV_BV_IMPL_NO_BATCH
/* Batch select, software-pipelined over chunks of queries so that each
 * chunk's cache misses are in flight while other chunks compute. Per chunk,
 * stage A reads each query's sample and prefetches the block entries it
 * points at; stage B (one chunk later) finds the block and the 512-bit
 * sub-block and prefetches that line of bits; stage C (one more chunk later)
 * finishes inside the line. */
#ifndef WV_SEL_CHUNK
#define WV_SEL_CHUNK 8
#endif
WV_TARGET static int WV_SFX(wv_bv_select_batch)(const wv_bv_t *bv, const uint64_t *q, size_t n,
                                                uint64_t *out, size_t *bad, int one) {
    uint64_t cnt = one ? bv->ones : bv->nbits - bv->ones;
    for (size_t t = 0; t < n; t++) {
        if (WV_UNLIKELY(q[t] >= cnt)) {
            *bad = t;
            return WV_ERANGE;
        }
    }
    const uint64_t *samp = one ? bv->sel1 : bv->sel0;
    uint64_t wpos[2][WV_SEL_CHUNK], rem[2][WV_SEL_CHUNK];
    size_t nch = (n + WV_SEL_CHUNK - 1) / WV_SEL_CHUNK;
#define WV_CH_LEN(c) (n - (c) * WV_SEL_CHUNK < WV_SEL_CHUNK ? n - (c) * WV_SEL_CHUNK : WV_SEL_CHUNK)
    for (size_t c = 0; c < nch + 2; c++) {
        if (c < nch)
            WV_SFX(wv_sel_stage_a)(bv, samp, q + c * WV_SEL_CHUNK, WV_CH_LEN(c));
        if (c >= 1 && c - 1 < nch)
            WV_SFX(wv_sel_stage_b)(bv, q + (c - 1) * WV_SEL_CHUNK, WV_CH_LEN(c - 1), one,
                                   wpos[(c - 1) & 1], rem[(c - 1) & 1]);
        if (c >= 2)
            WV_SFX(wv_sel_stage_c)(bv, WV_CH_LEN(c - 2), one, wpos[c & 1], rem[c & 1],
                                   out + (c - 2) * WV_SEL_CHUNK);
    }
#undef WV_CH_LEN
    return WV_OK;
}
#endif
