/*
 * wavelet_tree.c -- level-wise wavelet tree over a canonical prefix code,
 * balanced or Huffman-shaped (see wavelet.h for layout, space, query costs
 * and references).
 */
#include <stdlib.h>

#include "wavelet.h"
#include "wv_bits.h"
#include "wv_merge.h"

/* ---- kernels, compiled twice ------------------------------------------------ */
#define WV_BV_IMPL_NO_BATCH
#define WV_SFX(x) x##_portable
#define WV_TARGET
#define WV_SELECT64 wv_select64_portable
#define WV_MERGE_SIMD 0
#include "wv_bv_impl.h"
#include "wv_merge_impl.h"
#include "wv_wt_impl.h"
#undef WV_SFX
#undef WV_TARGET
#undef WV_SELECT64
#undef WV_MERGE_SIMD

#if WV_X86
/* ISA level 1 (POPCNT): broadword select, SSSE3 merges */
#define WV_SFX(x) x##_popcnt
#define WV_TARGET __attribute__((target("popcnt,ssse3")))
#define WV_SELECT64 wv_select64_portable
#define WV_MERGE_SIMD 1
#include "wv_bv_impl.h"
#include "wv_merge_impl.h"
#include "wv_wt_impl.h"
#undef WV_SFX
#undef WV_TARGET
#undef WV_SELECT64
#undef WV_MERGE_SIMD

/* ISA level 2 (POPCNT + BMI2): pdep select, SSSE3 merges */
#define WV_SFX(x) x##_bmi2
#define WV_TARGET __attribute__((target("popcnt,bmi2,ssse3")))
#define WV_SELECT64 wv_select64_bmi2
#define WV_MERGE_SIMD 1
#define WV_MERGE_512 1 /* + the AVX-512 VBMI2 byte merges where the CPU has them */
#include "wv_bv_impl.h"
#include "wv_merge_impl.h"
#include "wv_wt_impl.h"
#undef WV_SFX
#undef WV_TARGET
#undef WV_SELECT64
#undef WV_MERGE_SIMD
#undef WV_MERGE_512
/* the ISA level (wv_isa_*) picks the variant; the SSSE3 merges need wv_merge_simd_ok() */
#define WV_LEVEL() (wv_merge_simd_ok() ? wv_isa_level_internal() : 0)
#define WV_DISPATCH(name, ...)                                                                     \
    (WV_LEVEL() == 2   ? name##_bmi2(__VA_ARGS__)                                                 \
     : WV_LEVEL() == 1 ? name##_popcnt(__VA_ARGS__)                                               \
                       : name##_portable(__VA_ARGS__))
#else
#define WV_DISPATCH(name, ...) (wv_isa_level_internal(), name##_portable(__VA_ARGS__))
#endif

static uint64_t align_up(uint64_t a, uint64_t b) { return (a + b - 1) / b * b; }

/* level alignment for a level bitvector with this index kind (see wavelet.h) */
static uint64_t level_align(uint32_t index) { return index ? 64 : WV_LEVEL_ALIGN; }

/* ---- layout ------------------------------------------------------------------- */

int wv_wt_layout(const uint64_t *nact, uint32_t nlevels, uint32_t index, uint64_t *nbits) {
    if (!nact || !nbits || nlevels < 1 || nlevels > WV_WT_MAX_LEVELS || index > 1)
        return WV_EINVAL;
    if (nact[0] > (UINT64_C(1) << 50))
        return WV_EINVAL;
    uint64_t tot = 0;
    for (unsigned d = 0; d < nlevels; d++) {
        if (nact[d + 1] > nact[d])
            return WV_EINVAL;
        tot += align_up(nact[d], level_align(index));
    }
    if (nact[nlevels] != 0)
        return WV_EINVAL;
    *nbits = tot;
    return WV_OK;
}

/* canonical tables from cnt: first code and first index per length; Kraft */
static int wt_canon(const uint64_t *cnt, uint32_t L, uint64_t nsyms, uint64_t *first,
                    uint64_t *idx) {
    if (cnt[0] != 0)
        return WV_ECORRUPT;
    uint64_t code = 0, k = 0;
    first[0] = 0;
    idx[0] = 0;
    for (unsigned len = 1; len <= L; len++) {
        code <<= 1;
        first[len] = code;
        idx[len] = k;
        if (cnt[len] > (UINT64_C(1) << len) || code + cnt[len] > (UINT64_C(1) << len))
            return WV_ECORRUPT;
        code += cnt[len];
        k += cnt[len];
    }
    for (unsigned len = L + 1; len <= WV_WT_MAX_LEVELS; len++) {
        first[len] = UINT64_MAX;
        idx[len] = k;
    }
    return k == nsyms ? WV_OK : WV_ECORRUPT;
}

/* ---- build -------------------------------------------------------------------- */

#define WV_WT_BUILD(T, NAME)                                                                       \
    static int NAME(const void *seq, uint32_t width, uint64_t n, const uint32_t *lut,              \
                    uint64_t lut_len, const uint32_t *code, const uint8_t *len, uint32_t L,        \
                    uint64_t nsyms, const uint64_t *nact, const uint64_t *off, uint64_t *words) {  \
        T *buf = (T *)malloc((size_t)(3 * n + 1) * sizeof(T));                                    \
        if (!buf)                                                                                  \
            return WV_ENOMEM;                                                                      \
        T *cur = buf, *nxt = buf + n, *ones = buf + 2 * n;                                         \
        int st = WV_OK;                                                                            \
        for (uint64_t i = 0; i < n; i++) {                                                         \
            uint64_t v;                                                                            \
            switch (width) {                                                                       \
            case 1: v = ((const uint8_t *)seq)[i]; break;                                          \
            case 2: v = ((const uint16_t *)seq)[i]; break;                                         \
            case 4: v = ((const uint32_t *)seq)[i]; break;                                         \
            default: v = ((const uint64_t *)seq)[i]; break;                                        \
            }                                                                                      \
            if (lut) {                                                                             \
                if (v >= lut_len) {                                                                \
                    st = WV_EINVAL;                                                                \
                    break;                                                                         \
                }                                                                                  \
                v = lut[v];                                                                        \
            }                                                                                      \
            if (v >= nsyms) {                                                                      \
                st = WV_EINVAL;                                                                    \
                break;                                                                             \
            }                                                                                      \
            cur[i] = (T)v;                                                                         \
        }                                                                                          \
        uint64_t m = n;                                                                            \
        for (unsigned d = 0; d < L && st == WV_OK; d++) {                                          \
            if (m != nact[d]) {                                                                    \
                st = WV_EINVAL;                                                                    \
                break;                                                                             \
            }                                                                                      \
            uint64_t *w = words + off[d] / 64;                                                     \
            uint64_t acc = 0, wz = 0, wo = 0, prev = UINT64_MAX;                                   \
            for (uint64_t j = 0; j < m; j++) {                                                     \
                T ci = cur[j];                                                                     \
                unsigned ln = len[ci];                                                             \
                uint64_t cd = code[ci];                                                            \
                uint64_t b = (cd >> (ln - 1 - d)) & 1, pre = cd >> (ln - d);                       \
                if (pre != prev) {                                                                 \
                    memcpy(nxt + wz, ones, wo * sizeof(T));                                        \
                    wz += wo;                                                                      \
                    wo = 0;                                                                        \
                    prev = pre;                                                                    \
                }                                                                                  \
                acc |= b << (j & 63);                                                              \
                if ((j & 63) == 63) {                                                              \
                    w[j >> 6] = acc;                                                               \
                    acc = 0;                                                                       \
                }                                                                                  \
                if (ln > d + 1) {                                                                  \
                    if (b)                                                                         \
                        ones[wo++] = ci;                                                           \
                    else                                                                           \
                        nxt[wz++] = ci;                                                            \
                }                                                                                  \
            }                                                                                      \
            if (m & 63)                                                                            \
                w[m >> 6] = acc;                                                                   \
            memcpy(nxt + wz, ones, wo * sizeof(T));                                                \
            wz += wo;                                                                              \
            m = wz;                                                                                \
            T *t = cur;                                                                            \
            cur = nxt;                                                                             \
            nxt = t;                                                                               \
        }                                                                                          \
        if (st == WV_OK && m != 0)                                                                 \
            st = WV_EINVAL;                                                                        \
        free(buf);                                                                                 \
        return st;                                                                                 \
    }

WV_WT_BUILD(uint8_t, wt_build8)
WV_WT_BUILD(uint16_t, wt_build16)
WV_WT_BUILD(uint32_t, wt_build32)

int wv_wt_build_bits(const void *seq, uint32_t width, uint64_t n, const uint32_t *lut,
                     uint64_t lut_len, const uint64_t *cnt, uint32_t nlevels, uint64_t nsyms,
                     const uint64_t *nact, uint32_t index, uint64_t *words, uint64_t nwords) {
    uint64_t nbits, first[WV_WT_MAX_LEVELS + 1], idx[WV_WT_MAX_LEVELS + 1];
    uint64_t off[WV_WT_MAX_LEVELS + 1];
    if (!cnt || !nact || (!seq && n) || (width != 1 && width != 2 && width != 4 && width != 8))
        return WV_EINVAL;
    if (!lut && width != 4)
        return WV_EINVAL;
    if (wv_wt_layout(nact, nlevels, index, &nbits) != WV_OK || nact[0] != n)
        return WV_EINVAL;
    if ((!words && nbits) || nwords != nbits / 64 || nsyms > (UINT64_C(1) << 32))
        return WV_EINVAL;
    if (wt_canon(cnt, nlevels, nsyms, first, idx) != WV_OK)
        return WV_EINVAL;
    memset(words, 0, nwords * 8);
    if (n == 0)
        return WV_OK;
    off[0] = 0;
    for (unsigned d = 0; d < nlevels; d++)
        off[d + 1] = off[d] + align_up(nact[d], level_align(index));
    uint32_t *code = malloc((size_t)nsyms * sizeof *code + 1);
    uint8_t *len = malloc((size_t)nsyms + 1);
    if (!code || !len) {
        free(code), free(len);
        return WV_ENOMEM;
    }
    for (unsigned l = 1; l <= nlevels; l++)
        for (uint64_t k = 0; k < cnt[l]; k++) {
            code[idx[l] + k] = (uint32_t)(first[l] + k);
            len[idx[l] + k] = (uint8_t)l;
        }
    int st;
    if (nsyms <= 256)
        st = wt_build8(seq, width, n, lut, lut_len, code, len, nlevels, nsyms, nact, off, words);
    else if (nsyms <= 65536)
        st = wt_build16(seq, width, n, lut, lut_len, code, len, nlevels, nsyms, nact, off, words);
    else
        st = wt_build32(seq, width, n, lut, lut_len, code, len, nlevels, nsyms, nact, off, words);
    free(code), free(len);
    return st;
}

/* ---- init / validate --------------------------------------------------------------- */

static uint64_t bv_r1(const wv_bv_t *bv, uint64_t i) {
    uint64_t r = 0;
    wv_bv_rank1(bv, i, &r);
    return r;
}

int wv_wt_init(wv_wt_t *wt, const wv_bv_t *bv, uint64_t n, uint32_t L, const uint64_t *cnt,
               const uint64_t *nact, const uint64_t *syms, const uint64_t *skey,
               const uint32_t *spos, uint64_t nsyms) {
    uint64_t nbits;
    if (!wt || !bv || !cnt || !nact || ((!syms || !skey || !spos) && nsyms))
        return WV_EINVAL;
    if (L < 1 || L > WV_WT_MAX_LEVELS || nsyms > (UINT64_C(1) << 32))
        return WV_ECORRUPT;
    if (bv->index > 1 || wv_wt_layout(nact, L, bv->index, &nbits) != WV_OK || nact[0] != n)
        return WV_ECORRUPT;
    if (bv->nbits != nbits || bv->nwords != nbits / 64 || bv->ones > nbits)
        return WV_ECORRUPT;
    if ((n == 0) != (nsyms == 0))
        return WV_ECORRUPT;
    memset(wt, 0, sizeof *wt);
    wt->bv = *bv;
    wt->n = n;
    wt->nsyms = nsyms;
    wt->nlevels = L;
    wt->syms = syms;
    wt->skey = skey;
    wt->spos = spos;
    for (unsigned d = 0; d <= L; d++)
        wt->cnt[d] = cnt[d];
    if (wt_canon(cnt, L, nsyms, wt->first, wt->idx) != WV_OK)
        return WV_ECORRUPT;
    for (unsigned d = 0; d <= L; d++)
        wt->nact[d] = nact[d];
    wt->off[0] = 0;
    for (unsigned d = 0; d < L; d++)
        wt->off[d + 1] = wt->off[d] + align_up(nact[d], level_align(bv->index));
    for (unsigned d = 0; d < L; d++) {
        wt->base[d] = bv_r1(bv, wt->off[d]);
        if (bv_r1(bv, wt->off[d] + nact[d]) != bv_r1(bv, wt->off[d + 1]))
            return WV_ECORRUPT; /* padding bits must be zero */
    }
    wt->base[L] = bv->ones;
    /* code tables: canonical order (symbols ascending inside a length),
     * skey strictly ascending, spos a permutation with syms[spos[i]] == skey[i] */
    for (unsigned len = 1; len <= L; len++)
        for (uint64_t k = 1; k < cnt[len]; k++)
            if (syms[wt->idx[len] + k - 1] >= syms[wt->idx[len] + k])
                return WV_ECORRUPT;
    for (uint64_t i = 0; i < nsyms; i++) {
        if (i && skey[i - 1] >= skey[i])
            return WV_ECORRUPT;
        if (spos[i] >= nsyms || syms[spos[i]] != skey[i])
            return WV_ECORRUPT;
    }
    if (n == 0)
        return WV_OK;
    /* every nonempty node against its parent's bits (DFS, explicit stack) */
    uint64_t leafsum[WV_WT_MAX_LEVELS + 1] = {0}, insum[WV_WT_MAX_LEVELS + 1] = {0};
    struct {
        uint64_t s, e, pre;
        unsigned d;
    } st[2 * WV_WT_MAX_LEVELS + 4];
    int sp = 1;
    st[0].s = 0, st[0].e = n, st[0].pre = 0, st[0].d = 0;
    insum[0] = n;
    wt->nnodes[0] = 1;
    while (sp > 0) {
        sp--;
        uint64_t s = st[sp].s, e = st[sp].e, pre = st[sp].pre;
        unsigned d = st[sp].d;
        uint64_t rs = bv_r1(bv, wt->off[d] + s) - wt->base[d];
        uint64_t re = bv_r1(bv, wt->off[d] + e) - wt->base[d];
        uint64_t z = (e - s) - (re - rs);
        unsigned len = d + 1;
        uint64_t c = nact[d] - nact[d + 1];
        for (unsigned b = 0; b < 2; b++) {
            uint64_t ns = b ? s + z : s, ne = b ? e : s + z, q = (pre << 1) | b;
            if (ne == ns)
                continue;
            wt->nnodes[len]++;
            if (q < wt->first[len])
                return WV_ECORRUPT;
            if (q - wt->first[len] < cnt[len]) {
                if (ne > c)
                    return WV_ECORRUPT;
                leafsum[len] += ne - ns;
            } else {
                if (len >= L || ns < c || ne - c > nact[len])
                    return WV_ECORRUPT;
                insum[len] += ne - ns;
                st[sp].s = ns - c, st[sp].e = ne - c, st[sp].pre = q, st[sp].d = len;
                sp++;
            }
        }
    }
    for (unsigned d = 1; d <= L; d++)
        if (leafsum[d] != nact[d - 1] - nact[d] || insum[d] != nact[d])
            return WV_ECORRUPT;
    return WV_OK;
}

int wv_wt_size_bits(const wv_wt_t *wt, uint64_t *bits) {
    if (!wt || !bits)
        return WV_EINVAL;
    uint64_t b;
    int st = wv_bv_size_bits(&wt->bv, &b);
    if (st != WV_OK)
        return st;
    *bits = b + wt->nsyms * (64 + 64 + 32) + 64 * 2 * (wt->nlevels + 1);
    return WV_OK;
}

/* ---- queries ---------------------------------------------------------------------- */

/* canonical index of symbol c, or UINT64_MAX */
static uint64_t wt_find(const wv_wt_t *wt, uint64_t c) {
    uint64_t lo = 0, hi = wt->nsyms;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (wt->skey[mid] < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < wt->nsyms && wt->skey[lo] == c)
        return wt->spos[lo];
    return UINT64_MAX;
}

int wv_wt_access(const wv_wt_t *wt, uint64_t i, uint64_t *c) {
    if (!wt || !c)
        return WV_EINVAL;
    if (i >= wt->n)
        return WV_ERANGE;
    *c = wt->syms[WV_DISPATCH(wt_access_u, wt, i)];
    return WV_OK;
}

int wv_wt_rank(const wv_wt_t *wt, uint64_t c, uint64_t i, uint64_t *r) {
    if (!wt || !r)
        return WV_EINVAL;
    if (i > wt->n)
        return WV_ERANGE;
    uint64_t ci = wt_find(wt, c);
    *r = ci == UINT64_MAX ? 0 : WV_DISPATCH(wt_rank_u, wt, ci, i);
    return WV_OK;
}

int wv_wt_select(const wv_wt_t *wt, uint64_t c, uint64_t k, uint64_t *pos) {
    if (!wt || !pos)
        return WV_EINVAL;
    uint64_t ci = wt_find(wt, c);
    if (ci == UINT64_MAX || k >= wt->n)
        return WV_ERANGE;
    uint64_t p = WV_DISPATCH(wt_select_u, wt, ci, k);
    if (p == UINT64_MAX)
        return WV_ERANGE;
    *pos = p;
    return WV_OK;
}

int wv_wt_access_batch(const wv_wt_t *wt, const uint64_t *i, size_t n, uint64_t *out,
                       size_t *bad) {
    if (!wt || !bad || ((!i || !out) && n))
        return WV_EINVAL;
    for (size_t t = 0; t < n; t++)
        if (i[t] >= wt->n) {
            *bad = t;
            return WV_ERANGE;
        }
    WV_DISPATCH(wt_access_batch, wt, i, n, out);
    return WV_OK;
}

int wv_wt_rank_batch(const wv_wt_t *wt, const uint64_t *c, const uint64_t *i, size_t n,
                     uint64_t *out, size_t *bad) {
    if (!wt || !bad || ((!c || !i || !out) && n))
        return WV_EINVAL;
    for (size_t t = 0; t < n; t++) {
        int st = wv_wt_rank(wt, c[t], i[t], out + t);
        if (st != WV_OK) {
            *bad = t;
            return st;
        }
    }
    return WV_OK;
}

int wv_wt_select_batch(const wv_wt_t *wt, const uint64_t *c, const uint64_t *k, size_t n,
                       uint64_t *out, size_t *bad) {
    if (!wt || !bad || ((!c || !k || !out) && n))
        return WV_EINVAL;
    for (size_t t = 0; t < n; t++) {
        int st = wv_wt_select(wt, c[t], k[t], out + t);
        if (st != WV_OK) {
            *bad = t;
            return st;
        }
    }
    return WV_OK;
}

/* ---- bulk extract ------------------------------------------------------------------ */

int wv_wt_extract_ws(const wv_wt_t *wt, uint64_t l, uint64_t r, uint64_t *ws_entries) {
    if (!wt || !ws_entries)
        return WV_EINVAL;
    if (l > r || r > wt->n)
        return WV_ERANGE;
    uint64_t m = r - l, tot = 0;
    for (unsigned d = 0; d <= wt->nlevels; d++)
        tot += wt->nnodes[d] < m ? wt->nnodes[d] : m;
    *ws_entries = tot;
    return WV_OK;
}

int wv_wt_extract(const wv_wt_t *wt, uint64_t l, uint64_t r, void *out, uint32_t out_width,
                  void *tmp, uint32_t idx_width, uint64_t *ws, uint64_t ws_entries) {
    if (!wt || ((!out || !tmp) && r > l) || (!ws && ws_entries))
        return WV_EINVAL;
    if (out_width != 1 && out_width != 2 && out_width != 4 && out_width != 8)
        return WV_EINVAL;
    if (idx_width != 0 && ((idx_width != 1 && idx_width != 2 && idx_width != 4) ||
                           idx_width >= out_width || (idx_width < 4 && wt->nsyms > (UINT64_C(1) << (8 * idx_width)))))
        return WV_EINVAL;
    if (l > r || r > wt->n)
        return WV_ERANGE;
    if (r == l)
        return WV_OK;
    if (idx_width == 0 && out_width < 8 && wt->nsyms &&
        wt->skey[wt->nsyms - 1] >> (8 * out_width))
        return WV_EINVAL;
    unsigned L = wt->nlevels;
    wv_xent_t *ent = (wv_xent_t *)ws;
    uint64_t lstart[WV_WT_MAX_LEVELS + 2], lbit[WV_WT_MAX_LEVELS + 1];
    if (ws_entries < 1)
        return WV_EINVAL;
    /* co holds the code prefix until the entry is expanded */
    ent[0] = (wv_xent_t){l, r, 0, wt->n, WV_XENT_INTERNAL, 0, 0, 0};
    uint64_t ne = 1;
    lstart[0] = 0;
    lstart[1] = 1;
    for (unsigned d = 0; d < L; d++) {
        lbit[d] = wt->off[d];
        unsigned len = d + 1;
        uint64_t c = wt->nact[d] - wt->nact[d + 1];
        uint64_t off = 0, coff = 0;
        for (uint64_t t = lstart[d]; t < lstart[d + 1]; t++) {
            wv_xent_t *x = ent + t;
            uint64_t m = x->b - x->a;
            x->o = off;
            off += m;
            if (x->z == WV_XENT_LEAF)
                continue;
            uint64_t pre = x->co;
            x->co = coff; /* children are laid out in order in the next level */
            coff += m;
            uint64_t g = wt->off[d], bs = wt->base[d];
            uint64_t rs = bv_r1(&wt->bv, g + x->s) - bs, re = bv_r1(&wt->bv, g + x->e) - bs;
            uint64_t ra = bv_r1(&wt->bv, g + x->a) - bs, rb = bv_r1(&wt->bv, g + x->b) - bs;
            uint64_t zn = (x->e - x->s) - (re - rs);
            x->z = m - (rb - ra);
            uint64_t made = ne, nleaf = 0, lv[2] = {0, 0};
            for (unsigned b = 0; b < 2; b++) {
                uint64_t ns, nen, na, nb;
                if (b) {
                    ns = x->s + zn, nen = x->e;
                    na = ns + (ra - rs), nb = ns + (rb - rs);
                } else {
                    ns = x->s, nen = x->s + zn;
                    na = x->s + (x->a - x->s) - (ra - rs);
                    nb = x->s + (x->b - x->s) - (rb - rs);
                }
                if (na == nb)
                    continue;
                if (ne >= ws_entries)
                    return WV_EINVAL;
                uint64_t q = (pre << 1) | b;
                wv_xent_t *y = ent + ne++;
                if (q - wt->first[len] < wt->cnt[len]) {
                    uint64_t ci = wt->idx[len] + q - wt->first[len];
                    *y = (wv_xent_t){na, nb, 0, 0, idx_width ? ci : wt->syms[ci], 0, 0, WV_XENT_LEAF};
                    lv[b] = y->leaf;
                    nleaf++;
                } else {
                    *y = (wv_xent_t){na - c, nb - c, ns - c, nen - c, WV_XENT_INTERNAL, 0, q, 0};
                }
            }
            if (nleaf && nleaf == ne - made) { /* only leaf children: no merge, no fills */
                for (uint64_t t2 = made; t2 < ne; t2++)
                    ent[t2].co = 1;
                x->s = lv[0], x->e = lv[1], x->leaf = WV_XENT_PAIR;
            }
        }
        lstart[d + 2] = ne;
    }
    /* the deepest level holds leaves only; give its entries their offsets */
    {
        uint64_t off = 0;
        for (uint64_t t = lstart[L]; t < lstart[L + 1]; t++) {
            ent[t].o = off;
            off += ent[t].b - ent[t].a;
        }
    }
    if (idx_width == 0) {
        WV_DISPATCH(wv_decode_up, &wt->bv, ent, lstart, L, lbit, out, tmp, r - l, out_width);
        return WV_OK;
    }
    WV_DISPATCH(wv_decode_up, &wt->bv, ent, lstart, L, lbit, tmp, out, r - l, idx_width);
    uint64_t m = r - l;
#define WV_MAP(TI, TO)                                                                             \
    do {                                                                                           \
        const TI *src = (const TI *)tmp;                                                           \
        TO *dst = (TO *)out;                                                                       \
        for (uint64_t k = 0; k < m; k++)                                                           \
            dst[k] = (TO)wt->syms[src[k]];                                                         \
    } while (0)
    if (idx_width == 1) {
        if (out_width == 2) WV_MAP(uint8_t, uint16_t);
        else if (out_width == 4) WV_MAP(uint8_t, uint32_t);
        else WV_MAP(uint8_t, uint64_t);
    } else if (idx_width == 2) {
        if (out_width == 4) WV_MAP(uint16_t, uint32_t);
        else WV_MAP(uint16_t, uint64_t);
    } else {
        WV_MAP(uint32_t, uint64_t);
    }
#undef WV_MAP
    return WV_OK;
}

int wv_wt_histogram(const void *seq, uint32_t width, uint64_t n, uint64_t maxv, uint64_t *counts) {
    if ((!seq && n) || !counts || maxv >= (UINT64_C(1) << 40))
        return WV_EINVAL;
    memset(counts, 0, (size_t)(maxv + 1) * 8);
#define WV_HIST(T)                                                                                 \
    do {                                                                                           \
        const T *p = (const T *)seq;                                                               \
        for (uint64_t i = 0; i < n; i++) {                                                         \
            uint64_t v = p[i];                                                                     \
            if (v > maxv)                                                                          \
                return WV_EINVAL;                                                                  \
            counts[v]++;                                                                           \
        }                                                                                          \
    } while (0)
    switch (width) {
    case 1: WV_HIST(uint8_t); break;
    case 2: WV_HIST(uint16_t); break;
    case 4: WV_HIST(uint32_t); break;
    case 8: WV_HIST(uint64_t); break;
    default: return WV_EINVAL;
    }
#undef WV_HIST
    return WV_OK;
}
