/*
 * wv_wt_impl.h -- wavelet tree query kernels (private), included twice by
 * wavelet_tree.c like wv_bv_impl.h. They trust their (validated) arguments.
 * Positions are "active" coordinates of a level (elements whose code is
 * longer than the level); a node's children are found in the next level's
 * full coordinates, which are active coordinates plus the number of leaves
 * of that level (nact[d] - nact[d+1]).
 */

WV_INLINE WV_TARGET uint64_t WV_SFX(wt_r1)(const wv_wt_t *wt, unsigned d, uint64_t p) {
    return WV_SFX(wv_bv_rank1_u)(&wt->bv, wt->off[d] + p) - wt->base[d];
}

/* canonical index of the symbol at i */
static inline WV_TARGET uint64_t WV_SFX(wt_access_u)(const wv_wt_t *wt, uint64_t i) {
    uint64_t s = 0, e = wt->n, p = i, pre = 0;
    for (unsigned d = 0; d < wt->nlevels; d++) {
        uint64_t g = wt->off[d] + p;
        unsigned b = (unsigned)(wt->bv.words[g >> 6] >> (g & 63)) & 1;
        uint64_t rs = WV_SFX(wt_r1)(wt, d, s), re = WV_SFX(wt_r1)(wt, d, e);
        uint64_t rp = WV_SFX(wv_bv_rank1_u)(&wt->bv, g) - wt->base[d];
        uint64_t z = (e - s) - (re - rs), ns, ne, np;
        if (b) {
            ns = s + z;
            ne = e;
            np = s + z + (rp - rs);
        } else {
            ns = s;
            ne = s + z;
            np = p - (rp - rs);
        }
        pre = (pre << 1) | b;
        unsigned len = d + 1;
        if (pre - wt->first[len] < wt->cnt[len])
            return wt->idx[len] + pre - wt->first[len];
        uint64_t c = wt->nact[d] - wt->nact[d + 1];
        s = ns - c;
        e = ne - c;
        p = np - c;
    }
    return 0; /* unreachable on a validated structure */
}

/* code and length of canonical index ci */
WV_INLINE unsigned WV_SFX(wt_code)(const wv_wt_t *wt, uint64_t ci, uint64_t *code) {
    unsigned len = 1;
    while (len < wt->nlevels && ci >= wt->idx[len] + wt->cnt[len])
        len++;
    *code = wt->first[len] + (ci - wt->idx[len]);
    return len;
}

static inline WV_TARGET uint64_t WV_SFX(wt_rank_u)(const wv_wt_t *wt, uint64_t ci, uint64_t i) {
    uint64_t code;
    unsigned len = WV_SFX(wt_code)(wt, ci, &code);
    uint64_t s = 0, e = wt->n, p = i;
    for (unsigned d = 0; d < len; d++) {
        unsigned b = (unsigned)(code >> (len - 1 - d)) & 1;
        uint64_t rs = WV_SFX(wt_r1)(wt, d, s), re = WV_SFX(wt_r1)(wt, d, e);
        uint64_t rp = WV_SFX(wt_r1)(wt, d, p);
        uint64_t z = (e - s) - (re - rs), ns, ne, np;
        if (b) {
            ns = s + z;
            ne = e;
            np = s + z + (rp - rs);
        } else {
            ns = s;
            ne = s + z;
            np = p - (rp - rs);
        }
        if (d + 1 == len)
            return np - ns;
        uint64_t c = wt->nact[d] - wt->nact[d + 1];
        s = ns - c;
        e = ne - c;
        p = np - c;
    }
    return 0;
}

/* position of the k-th occurrence of canonical index ci, UINT64_MAX if none */
static inline WV_TARGET uint64_t WV_SFX(wt_select_u)(const wv_wt_t *wt, uint64_t ci, uint64_t k) {
    uint64_t code;
    unsigned len = WV_SFX(wt_code)(wt, ci, &code);
    uint64_t S[WV_WT_MAX_LEVELS], RS[WV_WT_MAX_LEVELS];
    uint64_t s = 0, e = wt->n, ns = 0, ne = 0;
    for (unsigned d = 0; d < len; d++) {
        unsigned b = (unsigned)(code >> (len - 1 - d)) & 1;
        uint64_t gs = WV_SFX(wv_bv_rank1_u)(&wt->bv, wt->off[d] + s);
        uint64_t rs = gs - wt->base[d], re = WV_SFX(wt_r1)(wt, d, e);
        uint64_t z = (e - s) - (re - rs);
        S[d] = s;
        RS[d] = gs;
        if (b) {
            ns = s + z;
            ne = e;
        } else {
            ns = s;
            ne = s + z;
        }
        if (d + 1 < len) {
            uint64_t c = wt->nact[d] - wt->nact[d + 1];
            s = ns - c;
            e = ne - c;
        }
    }
    if (k >= ne - ns)
        return UINT64_MAX;
    uint64_t p = k;
    for (unsigned d = len; d-- > 0;) {
        unsigned b = (unsigned)(code >> (len - 1 - d)) & 1;
        uint64_t start = wt->off[d] + S[d];
        uint64_t g = b ? WV_SFX(wv_bv_select_u)(&wt->bv, RS[d] + p, 1)
                       : WV_SFX(wv_bv_select_u)(&wt->bv, (start - RS[d]) + p, 0);
        p = g - start;
    }
    return p;
}

WV_TARGET static void WV_SFX(wt_access_batch)(const wv_wt_t *wt, const uint64_t *q, size_t n,
                                              uint64_t *out) {
    for (size_t t = 0; t < n; t++) {
        if (t + 8 < n) {
            uint64_t g = q[t + 8];
            WV_PREFETCH(wt->bv.blocks + (g >> WV_BV_BSHIFT(&wt->bv)));
            WV_PREFETCH(wt->bv.words + ((g >> 9) << 3));
        }
        out[t] = wt->syms[WV_SFX(wt_access_u)(wt, q[t])];
    }
}
