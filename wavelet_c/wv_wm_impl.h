/*
 * wv_wm_impl.h -- wavelet matrix query kernels (private), included twice by
 * wavelet_matrix.c like wv_bv_impl.h. Arguments are validated by the
 * exported wrappers; these trust them.
 */

/* ones in level l before position p */
WV_INLINE WV_TARGET uint64_t WV_SFX(wm_r1)(const wv_wm_t *wm, unsigned l, uint64_t p) {
    return WV_SFX(wv_bv_rank1_u)(&wm->bv, l * wm->stride + p) - wm->base[l];
}

static inline WV_TARGET uint64_t WV_SFX(wm_access_u)(const wv_wm_t *wm, uint64_t i) {
    uint64_t v = 0;
    unsigned L = wm->nlevels;
    for (unsigned l = 0; l < L; l++) {
        uint64_t g = l * wm->stride + i;
        unsigned b = (unsigned)(wm->bv.words[g >> 6] >> (g & 63)) & 1;
        uint64_t r1 = WV_SFX(wv_bv_rank1_u)(&wm->bv, g) - wm->base[l];
        v = (v << 1) | b;
        i = b ? wm->zeros[l] + r1 : i - r1;
    }
    return v;
}

/* occurrences of c (< 2^L) in [0, i) */
static inline WV_TARGET uint64_t WV_SFX(wm_rank_u)(const wv_wm_t *wm, uint64_t c, uint64_t i) {
    uint64_t s = 0, e = i;
    unsigned L = wm->nlevels;
    for (unsigned l = 0; l < L; l++) {
        unsigned b = (unsigned)(c >> (L - 1 - l)) & 1;
        uint64_t rs = WV_SFX(wm_r1)(wm, l, s), re = WV_SFX(wm_r1)(wm, l, e);
        if (b) {
            s = wm->zeros[l] + rs;
            e = wm->zeros[l] + re;
        } else {
            s -= rs;
            e -= re;
        }
    }
    return e - s;
}

/* position of the k-th c, or UINT64_MAX when there are not k+1 of them */
static inline WV_TARGET uint64_t WV_SFX(wm_select_u)(const wv_wm_t *wm, uint64_t c, uint64_t k) {
    uint64_t s = 0, e = wm->n;
    unsigned L = wm->nlevels;
    for (unsigned l = 0; l < L; l++) {
        unsigned b = (unsigned)(c >> (L - 1 - l)) & 1;
        uint64_t rs = WV_SFX(wm_r1)(wm, l, s), re = WV_SFX(wm_r1)(wm, l, e);
        if (b) {
            s = wm->zeros[l] + rs;
            e = wm->zeros[l] + re;
        } else {
            s -= rs;
            e -= re;
        }
    }
    if (k >= e - s)
        return UINT64_MAX;
    uint64_t p = s + k;
    for (unsigned l = L; l-- > 0;) {
        unsigned b = (unsigned)(c >> (L - 1 - l)) & 1;
        uint64_t start = l * wm->stride;
        if (b)
            p = WV_SFX(wv_bv_select_u)(&wm->bv, wm->base[l] + (p - wm->zeros[l]), 1) - start;
        else
            p = WV_SFX(wv_bv_select_u)(&wm->bv, (start - wm->base[l]) + p, 0) - start;
    }
    return p;
}

/* k-th smallest (0-based, k < r - l) in [l, r) */
static inline WV_TARGET uint64_t WV_SFX(wm_quantile_u)(const wv_wm_t *wm, uint64_t l, uint64_t r,
                                                    uint64_t k) {
    uint64_t v = 0;
    unsigned L = wm->nlevels;
    for (unsigned d = 0; d < L; d++) {
        uint64_t rl = WV_SFX(wm_r1)(wm, d, l), rr = WV_SFX(wm_r1)(wm, d, r);
        uint64_t z = (r - l) - (rr - rl);
        if (k < z) {
            l -= rl;
            r -= rr;
            v <<= 1;
        } else {
            k -= z;
            l = wm->zeros[d] + rl;
            r = wm->zeros[d] + rr;
            v = (v << 1) | 1;
        }
    }
    return v;
}

/* values < x in [l, r) */
static inline WV_TARGET uint64_t WV_SFX(wm_count_less_u)(const wv_wm_t *wm, uint64_t l, uint64_t r,
                                                      uint64_t x) {
    unsigned L = wm->nlevels;
    if (L < 64 && x >> L)
        return r - l;
    uint64_t res = 0;
    for (unsigned d = 0; d < L && l < r; d++) {
        unsigned b = (unsigned)(x >> (L - 1 - d)) & 1;
        uint64_t rl = WV_SFX(wm_r1)(wm, d, l), rr = WV_SFX(wm_r1)(wm, d, r);
        if (b) {
            res += (r - l) - (rr - rl);
            l = wm->zeros[d] + rl;
            r = wm->zeros[d] + rr;
        } else {
            l -= rl;
            r -= rr;
        }
    }
    return res;
}

/* Batch access: a chunk of queries walks the levels together, so the rank
 * misses of one level are in flight at once. */
#define WV_WM_CHUNK 16
WV_TARGET static void WV_SFX(wm_access_batch)(const wv_wm_t *wm, const uint64_t *q, size_t n,
                                              uint64_t *out) {
    unsigned L = wm->nlevels;
    uint64_t pos[WV_WM_CHUNK], val[WV_WM_CHUNK];
    for (size_t s0 = 0; s0 < n; s0 += WV_WM_CHUNK) {
        size_t m = n - s0 < WV_WM_CHUNK ? n - s0 : WV_WM_CHUNK;
        for (size_t t = 0; t < m; t++) {
            pos[t] = q[s0 + t];
            val[t] = 0;
        }
        for (unsigned l = 0; l < L; l++) {
            uint64_t st = l * wm->stride;
            for (size_t t = 0; t < m; t++) {
                uint64_t g = st + pos[t];
                WV_PREFETCH(wm->bv.blocks + (g >> WV_BV_BSHIFT(&wm->bv)));
                WV_PREFETCH(wm->bv.words + ((g >> 9) << 3));
            }
            for (size_t t = 0; t < m; t++) {
                uint64_t g = st + pos[t];
                unsigned b = (unsigned)(wm->bv.words[g >> 6] >> (g & 63)) & 1;
                uint64_t r1 = WV_SFX(wv_bv_rank1_u)(&wm->bv, g) - wm->base[l];
                val[t] = (val[t] << 1) | b;
                pos[t] = b ? wm->zeros[l] + r1 : pos[t] - r1;
            }
        }
        for (size_t t = 0; t < m; t++)
            out[s0 + t] = val[t];
    }
}

WV_TARGET static void WV_SFX(wm_rank_batch)(const wv_wm_t *wm, const uint64_t *c,
                                            const uint64_t *q, size_t n, uint64_t *out) {
    unsigned L = wm->nlevels;
    uint64_t s[WV_WM_CHUNK], e[WV_WM_CHUNK];
    for (size_t s0 = 0; s0 < n; s0 += WV_WM_CHUNK) {
        size_t m = n - s0 < WV_WM_CHUNK ? n - s0 : WV_WM_CHUNK;
        for (size_t t = 0; t < m; t++) {
            s[t] = 0;
            e[t] = q[s0 + t];
        }
        for (unsigned l = 0; l < L; l++) {
            uint64_t st = l * wm->stride;
            for (size_t t = 0; t < m; t++) {
                WV_PREFETCH(wm->bv.blocks + ((st + e[t]) >> WV_BV_BSHIFT(&wm->bv)));
                WV_PREFETCH(wm->bv.words + (((st + e[t]) >> 9) << 3));
                WV_PREFETCH(wm->bv.blocks + ((st + s[t]) >> WV_BV_BSHIFT(&wm->bv)));
                WV_PREFETCH(wm->bv.words + (((st + s[t]) >> 9) << 3));
            }
            for (size_t t = 0; t < m; t++) {
                uint64_t cc = c[s0 + t];
                if (L < 64 && cc >> L)
                    continue;
                unsigned b = (unsigned)(cc >> (L - 1 - l)) & 1;
                uint64_t rs = WV_SFX(wm_r1)(wm, l, s[t]), re = WV_SFX(wm_r1)(wm, l, e[t]);
                if (b) {
                    s[t] = wm->zeros[l] + rs;
                    e[t] = wm->zeros[l] + re;
                } else {
                    s[t] -= rs;
                    e[t] -= re;
                }
            }
        }
        for (size_t t = 0; t < m; t++) {
            uint64_t cc = c[s0 + t];
            out[s0 + t] = (L < 64 && cc >> L) ? 0 : e[t] - s[t];
        }
    }
}

/* Batch select in lockstep over chunks of queries (as access/rank above): the
 * top-down pass narrows each query to its symbol's range at the bottom level
 * with prefetched ranks, then the bottom-up pass runs one select per level for
 * the whole chunk, prefetching each query's block entries, then its line of
 * bits, before finishing (the three stages of the bitvector's batch select).
 * Returns the index of the first query whose symbol has too few occurrences,
 * or n when all succeed. */
WV_TARGET static size_t WV_SFX(wm_select_batch)(const wv_wm_t *wm, const uint64_t *c,
                                                const uint64_t *k, size_t n, uint64_t *out) {
    unsigned L = wm->nlevels;
    const wv_bv_t *bv = &wm->bv;
    uint64_t s[WV_WM_CHUNK], e[WV_WM_CHUNK], p[WV_WM_CHUNK], j[WV_WM_CHUNK];
    uint64_t wpos[WV_WM_CHUNK], rem[WV_WM_CHUNK];
    for (size_t s0 = 0; s0 < n; s0 += WV_WM_CHUNK) {
        size_t m = n - s0 < WV_WM_CHUNK ? n - s0 : WV_WM_CHUNK;
        for (size_t t = 0; t < m; t++) {
            s[t] = 0;
            e[t] = wm->n;
        }
        for (unsigned l = 0; l < L; l++) {
            uint64_t st = l * wm->stride;
            for (size_t t = 0; t < m; t++) {
                WV_PREFETCH(bv->blocks + ((st + s[t]) >> WV_BV_BSHIFT(bv)));
                WV_PREFETCH(bv->words + (((st + s[t]) >> 9) << 3));
                WV_PREFETCH(bv->blocks + ((st + e[t]) >> WV_BV_BSHIFT(bv)));
                WV_PREFETCH(bv->words + (((st + e[t]) >> 9) << 3));
            }
            for (size_t t = 0; t < m; t++) {
                unsigned b = (unsigned)(c[s0 + t] >> (L - 1 - l)) & 1;
                uint64_t rs = WV_SFX(wm_r1)(wm, l, s[t]), re = WV_SFX(wm_r1)(wm, l, e[t]);
                if (b) {
                    s[t] = wm->zeros[l] + rs;
                    e[t] = wm->zeros[l] + re;
                } else {
                    s[t] -= rs;
                    e[t] -= re;
                }
            }
        }
        for (size_t t = 0; t < m; t++) {
            if (k[s0 + t] >= e[t] - s[t])
                return s0 + t;
            p[t] = s[t] + k[s0 + t];
        }
        for (unsigned l = L; l-- > 0;) {
            uint64_t start = l * wm->stride;
            for (size_t t = 0; t < m; t++) { /* rank of the wanted bit among its kind */
                unsigned b = (unsigned)(c[s0 + t] >> (L - 1 - l)) & 1;
                j[t] = b ? wm->base[l] + (p[t] - wm->zeros[l]) : (start - wm->base[l]) + p[t];
                const uint64_t *samp = b ? bv->sel1 : bv->sel0;
                const uint64_t *en = bv->blocks + samp[j[t] >> WV_BV_SELSHIFT(bv)];
                WV_PREFETCH(en);
                WV_PREFETCH(en + 7);
            }
            for (size_t t = 0; t < m; t++) {
                int b = (int)(c[s0 + t] >> (L - 1 - l)) & 1;
                WV_SFX(wv_sel_stage_b)(bv, &j[t], 1, b, &wpos[t], &rem[t]);
            }
            for (size_t t = 0; t < m; t++) {
                int b = (int)(c[s0 + t] >> (L - 1 - l)) & 1;
                uint64_t pos;
                WV_SFX(wv_sel_stage_c)(bv, 1, b, &wpos[t], &rem[t], &pos);
                p[t] = pos - start;
            }
        }
        for (size_t t = 0; t < m; t++)
            out[s0 + t] = p[t];
    }
    return n;
}
