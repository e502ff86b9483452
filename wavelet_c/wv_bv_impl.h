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

/* ones in [0, 2048*b) */
WV_INLINE WV_TARGET uint64_t WV_SFX(wv_bv_block_rank)(const wv_bv_t *bv, uint64_t b) {
    return bv->super[b >> 21] + (bv->blocks[b] & 0xFFFFFFFFu);
}

/* rank1(i), 0 <= i <= nbits. Branch-free: the sub-block counts are summed
 * with masks and all 8 words of the 512-bit line are popcounted under masks
 * (words past the end of the array are never read). */
WV_INLINE WV_TARGET uint64_t WV_SFX(wv_bv_rank1_u)(const wv_bv_t *bv, uint64_t i) {
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
    uint64_t j = k / WV_BV_SEL_SAMPLE;
    uint64_t lo = samp[j], hi = samp[j + 1] + 1; /* candidate blocks [lo, hi) */
    if (hi > bv->nblocks - 1)
        hi = bv->nblocks - 1;
    /* binary search for the last block in [lo, hi) with count_before <= k */
    while (hi - lo > 8) {
        uint64_t mid = lo + (hi - lo) / 2;
        uint64_t c = WV_SFX(wv_bv_block_rank)(bv, mid);
        if (!one)
            c = mid * WV_BV_BLOCK_BITS - c;
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
            c = b * WV_BV_BLOCK_BITS - c;
        add += in & (c <= k);
    }
    return lo + add;
}

/* Finish select inside block b: k is the rank of the wanted bit among the
 * ones (zeros) of the whole vector. */
WV_INLINE WV_TARGET uint64_t WV_SFX(wv_bv_select_in_block)(const wv_bv_t *bv, uint64_t b, uint64_t k,
                                                 int one) {
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
            WV_PREFETCH(bv->blocks + (p >> 11));
            WV_PREFETCH(bv->words + ((p >> 9) << 3));
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
        const uint64_t *e = bv->blocks + samp[q[t] / WV_BV_SEL_SAMPLE];
        WV_PREFETCH(e);
        WV_PREFETCH(e + 7);
    }
}

WV_INLINE WV_TARGET void WV_SFX(wv_sel_stage_b)(const wv_bv_t *bv, const uint64_t *q, size_t m,
                                                int one, uint64_t *wpos, uint64_t *rem) {
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
            for (unsigned k2 = 0; k2 < left; k2++) {
                uint64_t x = one ? w[k2] : ~w[k2];
                unsigned c = wv_popcount(x);
                if (r < c) {
                    res = (wpos[t] + k2) * 64 + WV_SELECT64(x, (unsigned)r);
                    break;
                }
                r -= c;
            }
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
