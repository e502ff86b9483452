/*
 * wavelet_matrix.c -- wavelet matrix (see wavelet.h for layout, space, query
 * costs and references) and the merge tables shared with wavelet_tree.c.
 */
#include <stdlib.h>

#include "wavelet.h"
#include "wv_bits.h"
#include "wv_merge.h"

/* ---- merge shuffle tables ---------------------------------------------------- */
uint8_t wv_merge_tab8[256 * 8];
uint64_t wv_expand8[256];
uint8_t wv_merge_tab16z[256 * 16], wv_merge_tab16o[256 * 16];
uint8_t wv_merge_tab32z[16 * 16], wv_merge_tab32o[16 * 16];

void wv_merge_tables_init(void) {
    for (unsigned c = 0; c < 256; c++) {
        uint64_t m = 0;
        for (unsigned k = 0; k < 8; k++)
            if ((c >> k) & 1)
                m |= (uint64_t)0xFF << (8 * k);
        wv_expand8[c] = m;
    }
    for (unsigned c = 0; c < 256; c++) {
        unsigned zs = 0, os = 0;
        for (unsigned k = 0; k < 8; k++) {
            unsigned b = (c >> k) & 1;
            wv_merge_tab8[8 * c + k] = (uint8_t)(b ? 8 + os : zs);
            for (unsigned h = 0; h < 2; h++) {
                wv_merge_tab16z[16 * c + 2 * k + h] = (uint8_t)(b ? 0x80 : 2 * zs + h);
                wv_merge_tab16o[16 * c + 2 * k + h] = (uint8_t)(b ? 2 * os + h : 0x80);
            }
            if (b)
                os++;
            else
                zs++;
        }
    }
    for (unsigned c = 0; c < 16; c++) {
        unsigned zs = 0, os = 0;
        for (unsigned k = 0; k < 4; k++) {
            unsigned b = (c >> k) & 1;
            for (unsigned h = 0; h < 4; h++) {
                wv_merge_tab32z[16 * c + 4 * k + h] = (uint8_t)(b ? 0x80 : 4 * zs + h);
                wv_merge_tab32o[16 * c + 4 * k + h] = (uint8_t)(b ? 4 * os + h : 0x80);
            }
            if (b)
                os++;
            else
                zs++;
        }
    }
}

static int g_simd = -1, g_512 = -1;
__attribute__((constructor)) static void wv_wm_init_tables(void) {
    wv_merge_tables_init();
#if WV_X86
    __builtin_cpu_init();
    g_simd = __builtin_cpu_supports("ssse3") && __builtin_cpu_supports("popcnt");
    g_512 = g_simd && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vbmi2");
#else
    g_simd = 0;
    g_512 = 0;
#endif
}

int wv_merge_simd_ok(void) { return g_simd > 0; }
int wv_merge512_ok(void) { return g_512 > 0; }

/* ---- kernels, compiled twice ------------------------------------------------ */
#define WV_BV_IMPL_NO_BATCH
#define WV_SFX(x) x##_portable
#define WV_TARGET
#define WV_SELECT64 wv_select64_portable
#define WV_MERGE_SIMD 0
#include "wv_bv_impl.h"
#include "wv_merge_impl.h"
#include "wv_wm_impl.h"
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
#include "wv_wm_impl.h"
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
#include "wv_wm_impl.h"
#undef WV_SFX
#undef WV_TARGET
#undef WV_SELECT64
#undef WV_MERGE_SIMD
#undef WV_MERGE_512
/* the ISA level (wv_isa_*) picks the variant; the SSSE3 merges need g_simd */
#define WV_LEVEL() (g_simd > 0 ? wv_isa_level_internal() : 0)
#define WV_DISPATCH(name, ...)                                                                     \
    (WV_LEVEL() == 2   ? name##_bmi2(__VA_ARGS__)                                                 \
     : WV_LEVEL() == 1 ? name##_popcnt(__VA_ARGS__)                                               \
                       : name##_portable(__VA_ARGS__))
#else
#define WV_DISPATCH(name, ...) (wv_isa_level_internal(), name##_portable(__VA_ARGS__))
#endif

/* ---- layout, build, init ------------------------------------------------------ */

static uint64_t align_up(uint64_t a, uint64_t b) { return (a + b - 1) / b * b; }

int wv_wm_layout(uint64_t n, uint32_t nlevels, uint64_t *stride, uint64_t *nbits) {
    if (!stride || !nbits || nlevels < 1 || nlevels > WV_WM_MAX_LEVELS)
        return WV_EINVAL;
    if (n > (UINT64_C(1) << 50))
        return WV_EINVAL;
    uint64_t s = align_up(n, WV_LEVEL_ALIGN);
    if (s > (UINT64_C(1) << 58) / nlevels)
        return WV_EINVAL;
    *stride = s;
    *nbits = s * nlevels;
    return WV_OK;
}

#define WV_WM_BUILD(T, NAME)                                                                       \
    static int NAME(const T *seq, uint64_t n, unsigned L, uint64_t stride, uint64_t *words) {      \
        T acc = 0;                                                                                 \
        for (uint64_t i = 0; i < n; i++)                                                           \
            acc |= seq[i];                                                                         \
        if (L < 8 * sizeof(T) && (uint64_t)acc >> L)                                               \
            return WV_EINVAL;                                                                      \
        T *buf = NULL;                                                                             \
        if (L > 1) {                                                                               \
            buf = (T *)malloc((size_t)(2 * n + 1) * sizeof(T));                                    \
            if (!buf)                                                                              \
                return WV_ENOMEM;                                                                  \
        }                                                                                          \
        const T *cur = seq;                                                                        \
        T *nxt = buf, *other = buf ? buf + n : NULL;                                               \
        for (unsigned l = 0; l < L; l++) {                                                         \
            unsigned sh = L - 1 - l;                                                               \
            uint64_t *w = words + (l * stride) / 64, ones = 0;                                     \
            uint64_t i = 0;                                                                        \
            for (; i + 64 <= n; i += 64) {                                                         \
                uint64_t x = 0;                                                                    \
                for (unsigned k = 0; k < 64; k++)                                                  \
                    x |= (uint64_t)((cur[i + k] >> sh) & 1) << k;                                  \
                w[i / 64] = x;                                                                     \
                ones += (uint64_t)__builtin_popcountll(x);                                         \
            }                                                                                      \
            if (i < n) {                                                                           \
                uint64_t x = 0;                                                                    \
                for (unsigned k = 0; i + k < n; k++)                                               \
                    x |= (uint64_t)((cur[i + k] >> sh) & 1) << k;                                  \
                w[i / 64] = x;                                                                     \
                ones += (uint64_t)__builtin_popcountll(x);                                         \
            }                                                                                      \
            if (l + 1 == L)                                                                        \
                break;                                                                             \
            uint64_t zp = 0, op = n - ones;                                                        \
            for (uint64_t j = 0; j < n; j++) {                                                     \
                T v = cur[j];                                                                      \
                uint64_t b = (v >> sh) & 1;                                                        \
                nxt[b ? op : zp] = v;                                                              \
                op += b;                                                                           \
                zp += b ^ 1;                                                                       \
            }                                                                                      \
            cur = nxt;                                                                             \
            T *t = other;                                                                          \
            other = nxt;                                                                           \
            nxt = t;                                                                               \
        }                                                                                          \
        free(buf);                                                                                 \
        return WV_OK;                                                                              \
    }

WV_WM_BUILD(uint8_t, wm_build8)
WV_WM_BUILD(uint16_t, wm_build16)
WV_WM_BUILD(uint32_t, wm_build32)
WV_WM_BUILD(uint64_t, wm_build64)

int wv_wm_build_bits(const void *seq, uint32_t width, uint64_t n, uint32_t nlevels,
                     uint64_t *words, uint64_t nwords) {
    uint64_t stride, nbits;
    int st = wv_wm_layout(n, nlevels, &stride, &nbits);
    if (st != WV_OK)
        return st;
    if ((!seq && n) || (!words && nbits) || nwords != nbits / 64)
        return WV_EINVAL;
    memset(words, 0, nwords * 8);
    switch (width) {
    case 1: return wm_build8((const uint8_t *)seq, n, nlevels, stride, words);
    case 2: return wm_build16((const uint16_t *)seq, n, nlevels, stride, words);
    case 4: return wm_build32((const uint32_t *)seq, n, nlevels, stride, words);
    case 8: return wm_build64((const uint64_t *)seq, n, nlevels, stride, words);
    default: return WV_EINVAL;
    }
}

int wv_wm_init(wv_wm_t *wm, const wv_bv_t *bv, uint64_t n, uint32_t nlevels) {
    uint64_t stride, nbits;
    if (!wm || !bv)
        return WV_EINVAL;
    if (wv_wm_layout(n, nlevels, &stride, &nbits) != WV_OK)
        return WV_ECORRUPT;
    if (bv->nbits != nbits || bv->nwords != nbits / 64 || bv->nblocks < 1 || bv->ones > nbits)
        return WV_ECORRUPT;
    memset(wm, 0, sizeof *wm);
    wm->bv = *bv;
    wm->n = n;
    wm->stride = stride;
    wm->nlevels = nlevels;
    for (unsigned l = 0; l < nlevels; l++) {
        uint64_t r0, r1, r2;
        wv_bv_rank1(bv, l * stride, &r0);
        wv_bv_rank1(bv, l * stride + n, &r1);
        wv_bv_rank1(bv, (l + 1) * stride, &r2);
        if (r2 != r1) /* padding bits must be zero */
            return WV_ECORRUPT;
        wm->base[l] = r0;
        wm->zeros[l] = n - (r1 - r0);
    }
    return WV_OK;
}

int wv_wm_size_bits(const wv_wm_t *wm, uint64_t *bits) {
    if (!wm || !bits)
        return WV_EINVAL;
    return wv_bv_size_bits(&wm->bv, bits);
}

/* ---- single queries ------------------------------------------------------------- */

static int wm_sym_ok(const wv_wm_t *wm, uint64_t c) {
    return wm->nlevels >= 64 || (c >> wm->nlevels) == 0;
}

int wv_wm_access(const wv_wm_t *wm, uint64_t i, uint64_t *c) {
    if (!wm || !c)
        return WV_EINVAL;
    if (i >= wm->n)
        return WV_ERANGE;
    *c = WV_DISPATCH(wm_access_u, wm, i);
    return WV_OK;
}

int wv_wm_rank(const wv_wm_t *wm, uint64_t c, uint64_t i, uint64_t *r) {
    if (!wm || !r)
        return WV_EINVAL;
    if (i > wm->n)
        return WV_ERANGE;
    *r = wm_sym_ok(wm, c) ? WV_DISPATCH(wm_rank_u, wm, c, i) : 0;
    return WV_OK;
}

int wv_wm_select(const wv_wm_t *wm, uint64_t c, uint64_t k, uint64_t *pos) {
    if (!wm || !pos)
        return WV_EINVAL;
    if (!wm_sym_ok(wm, c) || k >= wm->n)
        return WV_ERANGE;
    uint64_t p = WV_DISPATCH(wm_select_u, wm, c, k);
    if (p == UINT64_MAX)
        return WV_ERANGE;
    *pos = p;
    return WV_OK;
}

#define WM_RANGE_OK(wm, l, r) ((l) <= (r) && (r) <= (wm)->n)

int wv_wm_quantile(const wv_wm_t *wm, uint64_t l, uint64_t r, uint64_t k, uint64_t *c) {
    if (!wm || !c)
        return WV_EINVAL;
    if (!WM_RANGE_OK(wm, l, r) || k >= r - l)
        return WV_ERANGE;
    *c = WV_DISPATCH(wm_quantile_u, wm, l, r, k);
    return WV_OK;
}

int wv_wm_count_less(const wv_wm_t *wm, uint64_t l, uint64_t r, uint64_t x, uint64_t *cnt) {
    if (!wm || !cnt)
        return WV_EINVAL;
    if (!WM_RANGE_OK(wm, l, r))
        return WV_ERANGE;
    *cnt = WV_DISPATCH(wm_count_less_u, wm, l, r, x);
    return WV_OK;
}

int wv_wm_range_freq(const wv_wm_t *wm, uint64_t l, uint64_t r, uint64_t lo, uint64_t hi,
                     uint64_t *cnt) {
    if (!wm || !cnt)
        return WV_EINVAL;
    if (!WM_RANGE_OK(wm, l, r))
        return WV_ERANGE;
    if (lo >= hi) {
        *cnt = 0;
        return WV_OK;
    }
    *cnt = WV_DISPATCH(wm_count_less_u, wm, l, r, hi) - WV_DISPATCH(wm_count_less_u, wm, l, r, lo);
    return WV_OK;
}

int wv_wm_prev_value(const wv_wm_t *wm, uint64_t l, uint64_t r, uint64_t x, uint64_t *c) {
    if (!wm || !c)
        return WV_EINVAL;
    if (!WM_RANGE_OK(wm, l, r))
        return WV_ERANGE;
    uint64_t k = WV_DISPATCH(wm_count_less_u, wm, l, r, x);
    if (k == 0)
        return WV_ENOTFOUND;
    *c = WV_DISPATCH(wm_quantile_u, wm, l, r, k - 1);
    return WV_OK;
}

int wv_wm_next_value(const wv_wm_t *wm, uint64_t l, uint64_t r, uint64_t x, uint64_t *c) {
    if (!wm || !c)
        return WV_EINVAL;
    if (!WM_RANGE_OK(wm, l, r))
        return WV_ERANGE;
    uint64_t k = WV_DISPATCH(wm_count_less_u, wm, l, r, x);
    if (k == r - l)
        return WV_ENOTFOUND;
    *c = WV_DISPATCH(wm_quantile_u, wm, l, r, k);
    return WV_OK;
}

int wv_wm_range_list(const wv_wm_t *wm, uint64_t l, uint64_t r, uint64_t lo, uint64_t hi,
                     uint64_t *vals, uint64_t *cnts, uint64_t cap, uint64_t *count) {
    if (!wm || !count || (cap && (!vals || !cnts)))
        return WV_EINVAL;
    if (!WM_RANGE_OK(wm, l, r))
        return WV_ERANGE;
    unsigned L = wm->nlevels;
    uint64_t total = 0;
    /* explicit DFS stack: (level, l, r, prefix); at most one pending sibling per level */
    struct {
        uint64_t l, r, pre;
        unsigned d;
    } st[2 * WV_WM_MAX_LEVELS + 2];
    int sp = 0;
    if (l < r && lo < hi) {
        st[0].l = l, st[0].r = r, st[0].pre = 0, st[0].d = 0;
        sp = 1;
    }
    while (sp > 0) {
        sp--;
        uint64_t a = st[sp].l, b = st[sp].r, pre = st[sp].pre;
        unsigned d = st[sp].d;
        /* values covered: [pre << (L-d), (pre+1) << (L-d)) */
        unsigned sh = L - d;
        uint64_t vlo = sh >= 64 ? 0 : pre << sh;
        uint64_t vhi_m1 = sh >= 64 ? UINT64_MAX : vlo + ((UINT64_C(1) << sh) - 1);
        if (vhi_m1 < lo || vlo >= hi)
            continue;
        if (d == L) {
            if (total < cap) {
                vals[total] = pre;
                cnts[total] = b - a;
            }
            total++;
            continue;
        }
        uint64_t ra, rb;
        wv_bv_rank1(&wm->bv, d * wm->stride + a, &ra);
        wv_bv_rank1(&wm->bv, d * wm->stride + b, &rb);
        ra -= wm->base[d];
        rb -= wm->base[d];
        uint64_t z = wm->zeros[d];
        /* push one-child first so the zero-child (smaller values) pops first */
        if (rb > ra) {
            st[sp].l = z + ra, st[sp].r = z + rb, st[sp].pre = (pre << 1) | 1, st[sp].d = d + 1;
            sp++;
        }
        if ((b - a) > (rb - ra)) {
            st[sp].l = a - ra, st[sp].r = b - rb, st[sp].pre = pre << 1, st[sp].d = d + 1;
            sp++;
        }
    }
    *count = total;
    return WV_OK;
}

/* ---- batch queries -------------------------------------------------------------- */

#define WV_BATCH_OK(p) ((p) || !n)

int wv_wm_access_batch(const wv_wm_t *wm, const uint64_t *i, size_t n, uint64_t *out,
                       size_t *bad) {
    if (!wm || !bad || !WV_BATCH_OK(i) || !WV_BATCH_OK(out))
        return WV_EINVAL;
    for (size_t t = 0; t < n; t++)
        if (i[t] >= wm->n) {
            *bad = t;
            return WV_ERANGE;
        }
    WV_DISPATCH(wm_access_batch, wm, i, n, out);
    return WV_OK;
}

int wv_wm_rank_batch(const wv_wm_t *wm, const uint64_t *c, const uint64_t *i, size_t n,
                     uint64_t *out, size_t *bad) {
    if (!wm || !bad || !WV_BATCH_OK(c) || !WV_BATCH_OK(i) || !WV_BATCH_OK(out))
        return WV_EINVAL;
    for (size_t t = 0; t < n; t++)
        if (i[t] > wm->n) {
            *bad = t;
            return WV_ERANGE;
        }
    WV_DISPATCH(wm_rank_batch, wm, c, i, n, out);
    return WV_OK;
}

int wv_wm_select_batch(const wv_wm_t *wm, const uint64_t *c, const uint64_t *k, size_t n,
                       uint64_t *out, size_t *bad) {
    if (!wm || !bad || !WV_BATCH_OK(c) || !WV_BATCH_OK(k) || !WV_BATCH_OK(out))
        return WV_EINVAL;
    for (size_t t = 0; t < n; t++)
        if (!wm_sym_ok(wm, c[t]) || k[t] >= wm->n) {
            *bad = t;
            return WV_ERANGE;
        }
    size_t fail = WV_DISPATCH(wm_select_batch, wm, c, k, n, out);
    if (fail < n) {
        *bad = fail;
        return WV_ERANGE;
    }
    return WV_OK;
}

#define WM_RANGE_BATCH(NAME, EXPR)                                                                 \
    for (size_t t = 0; t < n; t++) {                                                               \
        int st = EXPR;                                                                             \
        if (st != WV_OK) {                                                                         \
            *bad = t;                                                                              \
            return st;                                                                             \
        }                                                                                          \
    }                                                                                              \
    return WV_OK;

int wv_wm_quantile_batch(const wv_wm_t *wm, const uint64_t *l, const uint64_t *r,
                         const uint64_t *k, size_t n, uint64_t *out, size_t *bad) {
    if (!wm || !bad || !WV_BATCH_OK(l) || !WV_BATCH_OK(r) || !WV_BATCH_OK(k) || !WV_BATCH_OK(out))
        return WV_EINVAL;
    WM_RANGE_BATCH(q, wv_wm_quantile(wm, l[t], r[t], k[t], out + t))
}

int wv_wm_count_less_batch(const wv_wm_t *wm, const uint64_t *l, const uint64_t *r,
                           const uint64_t *x, size_t n, uint64_t *out, size_t *bad) {
    if (!wm || !bad || !WV_BATCH_OK(l) || !WV_BATCH_OK(r) || !WV_BATCH_OK(x) || !WV_BATCH_OK(out))
        return WV_EINVAL;
    WM_RANGE_BATCH(c, wv_wm_count_less(wm, l[t], r[t], x[t], out + t))
}

int wv_wm_range_freq_batch(const wv_wm_t *wm, const uint64_t *l, const uint64_t *r,
                           const uint64_t *lo, const uint64_t *hi, size_t n, uint64_t *out,
                           size_t *bad) {
    if (!wm || !bad || !WV_BATCH_OK(l) || !WV_BATCH_OK(r) || !WV_BATCH_OK(lo) ||
        !WV_BATCH_OK(hi) || !WV_BATCH_OK(out))
        return WV_EINVAL;
    WM_RANGE_BATCH(f, wv_wm_range_freq(wm, l[t], r[t], lo[t], hi[t], out + t))
}

static int wm_pn_batch(const wv_wm_t *wm, const uint64_t *l, const uint64_t *r, const uint64_t *x,
                       size_t n, uint64_t *out, uint8_t *found, size_t *bad, int next) {
    if (!wm || !bad || !WV_BATCH_OK(l) || !WV_BATCH_OK(r) || !WV_BATCH_OK(x) ||
        !WV_BATCH_OK(out) || !WV_BATCH_OK(found))
        return WV_EINVAL;
    for (size_t t = 0; t < n; t++) {
        int st = next ? wv_wm_next_value(wm, l[t], r[t], x[t], out + t)
                      : wv_wm_prev_value(wm, l[t], r[t], x[t], out + t);
        if (st == WV_ENOTFOUND) {
            out[t] = 0;
            found[t] = 0;
            continue;
        }
        if (st != WV_OK) {
            *bad = t;
            return st;
        }
        found[t] = 1;
    }
    return WV_OK;
}

int wv_wm_prev_value_batch(const wv_wm_t *wm, const uint64_t *l, const uint64_t *r,
                           const uint64_t *x, size_t n, uint64_t *out, uint8_t *found,
                           size_t *bad) {
    return wm_pn_batch(wm, l, r, x, n, out, found, bad, 0);
}

int wv_wm_next_value_batch(const wv_wm_t *wm, const uint64_t *l, const uint64_t *r,
                           const uint64_t *x, size_t n, uint64_t *out, uint8_t *found,
                           size_t *bad) {
    return wm_pn_batch(wm, l, r, x, n, out, found, bad, 1);
}

/* ---- bulk extract ------------------------------------------------------------------ */

int wv_wm_extract_ws(const wv_wm_t *wm, uint64_t l, uint64_t r, uint64_t *ws_entries) {
    if (!wm || !ws_entries)
        return WV_EINVAL;
    if (!WM_RANGE_OK(wm, l, r))
        return WV_ERANGE;
    uint64_t m = r - l, tot = 0;
    for (unsigned d = 0; d <= wm->nlevels; d++) {
        uint64_t c = d < 63 ? (UINT64_C(1) << d) : UINT64_MAX;
        tot += c < m ? c : m;
    }
    *ws_entries = tot;
    return WV_OK;
}

int wv_wm_extract(const wv_wm_t *wm, uint64_t l, uint64_t r, void *out, uint32_t out_width,
                  void *tmp, uint64_t *ws, uint64_t ws_entries) {
    if (!wm || (!out && r > l) || (!tmp && r > l) || (!ws && ws_entries))
        return WV_EINVAL;
    if (out_width != 1 && out_width != 2 && out_width != 4 && out_width != 8)
        return WV_EINVAL;
    if (!WM_RANGE_OK(wm, l, r))
        return WV_ERANGE;
    unsigned L = wm->nlevels;
    if (8 * out_width < L)
        return WV_EINVAL;
    if (r == l)
        return WV_OK;
    wv_xent_t *ent = (wv_xent_t *)ws;
    uint64_t lstart[WV_WM_MAX_LEVELS + 2], lbit[WV_WM_MAX_LEVELS + 1];
    uint64_t ne = 0;
    if (ws_entries < 1)
        return WV_EINVAL;
    ent[0] = (wv_xent_t){l, r, 0, 0, 0, 0, 0, L == 0 ? WV_XENT_LEAF : 0};
    lstart[0] = 0;
    lstart[1] = ne = 1;
    /* prefix of each entry kept in s */
    for (unsigned d = 0; d < L; d++) {
        lbit[d] = d * wm->stride;
        uint64_t off = 0;
        for (uint64_t t = lstart[d]; t < lstart[d + 1]; t++) {
            wv_xent_t *x = ent + t;
            uint64_t ra, rb;
            wv_bv_rank1(&wm->bv, lbit[d] + x->a, &ra);
            wv_bv_rank1(&wm->bv, lbit[d] + x->b, &rb);
            ra -= wm->base[d];
            rb -= wm->base[d];
            uint64_t m = x->b - x->a, ones = rb - ra;
            x->z = m - ones;
            x->co = off;
            int last = d + 1 == L;
            if (x->z) {
                if (ne >= ws_entries)
                    return WV_EINVAL;
                ent[ne++] = (wv_xent_t){x->a - ra, x->b - rb, x->s << 1, 0,
                                        last ? x->s << 1 : WV_XENT_INTERNAL, off, 0,
                                        last ? WV_XENT_LEAF : 0};
            }
            if (ones) {
                if (ne >= ws_entries)
                    return WV_EINVAL;
                ent[ne++] = (wv_xent_t){wm->zeros[d] + ra, wm->zeros[d] + rb, (x->s << 1) | 1, 0,
                                        last ? (x->s << 1) | 1 : WV_XENT_INTERNAL, off + x->z, 0,
                                        last ? WV_XENT_LEAF : 0};
            }
            if (last) { /* children are leaves: fill this level's values from the bits */
                for (uint64_t t2 = ne - (x->z != 0) - (ones != 0); t2 < ne; t2++)
                    ent[t2].co = 1;
                uint64_t v0 = x->s << 1;
                x->s = v0, x->e = v0 | 1, x->leaf = WV_XENT_PAIR;
            }
            off += m;
        }
        lstart[d + 2] = ne;
    }
    WV_DISPATCH(wv_decode_up, &wm->bv, ent, lstart, L, lbit, out, tmp, r - l, out_width);
    return WV_OK;
}
