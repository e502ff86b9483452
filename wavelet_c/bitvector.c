/*
 * bitvector.c -- rank/select bitvector (see wavelet.h for the layout, space
 * and query costs) and the process-wide ISA dispatch.
 */
#include "wavelet.h"
#include "wv_bits.h"

/* ---- in-byte select table (filled when the library is loaded) ------------ */
uint8_t wv_select_in_byte[256 * 8];

/* ---- ISA dispatch ---------------------------------------------------------- */
static int g_isa = -1; /* -1: not chosen yet */

static int wv_detect_isa(void);

__attribute__((constructor)) static void wv_init_tables(void) {
    for (unsigned x = 0; x < 256; x++) {
        unsigned r = 0;
        for (unsigned b = 0; b < 8; b++)
            wv_select_in_byte[x * 8 + b] = 0;
        for (unsigned b = 0; b < 8; b++)
            if (x >> b & 1)
                wv_select_in_byte[x * 8 + r++] = (uint8_t)b;
    }
    __atomic_store_n(&g_isa, wv_detect_isa(), __ATOMIC_RELEASE);
}

/* pdep/pext are microcoded (tens to hundreds of cycles) on AMD before Zen 3
 * (family 0x19); there the POPCNT level with broadword select is faster. */
static int wv_pdep_is_fast(void) {
#if WV_X86
    unsigned a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
    int amd = b == 0x68747541u; /* "Auth" of AuthenticAMD */
    if (!amd)
        return 1;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    unsigned family = ((a >> 8) & 0xF) + (((a >> 8) & 0xF) == 0xF ? ((a >> 20) & 0xFF) : 0);
    return family >= 0x19;
#else
    return 0;
#endif
}

/* Highest level the CPU can run. */
static int wv_cpu_max(void) {
#if WV_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("popcnt"))
        return __builtin_cpu_supports("bmi2") ? 2 : 1;
#endif
    return 0;
}

/* Level chosen by default: the fastest, not the highest. */
static int wv_detect_isa(void) {
    int m = wv_cpu_max();
    if (m == 2 && !wv_pdep_is_fast())
        m = 1;
    return m;
}

int wv_isa_level_internal(void) {
    int l = __atomic_load_n(&g_isa, __ATOMIC_ACQUIRE);
    if (WV_LIKELY(l >= 0))
        return l;
    l = wv_detect_isa();
    __atomic_store_n(&g_isa, l, __ATOMIC_RELEASE);
    return l;
}

int wv_isa_get(int *level) {
    if (!level)
        return WV_EINVAL;
    *level = wv_isa_level_internal();
    return WV_OK;
}

int wv_isa_max(int *level) {
    if (!level)
        return WV_EINVAL;
    *level = wv_cpu_max();
    return WV_OK;
}

int wv_isa_set(int level) {
    if (level < 0 || level > wv_cpu_max())
        return WV_EINVAL;
    __atomic_store_n(&g_isa, level, __ATOMIC_RELEASE);
    return WV_OK;
}

/* ---- kernels, compiled twice ----------------------------------------------- */
#define WV_SFX(x) x##_portable
#define WV_TARGET
#define WV_SELECT64 wv_select64_portable
#include "wv_bv_impl.h"
#undef WV_SFX
#undef WV_TARGET
#undef WV_SELECT64

#if WV_X86
#define WV_SFX(x) x##_popcnt
#define WV_TARGET __attribute__((target("popcnt")))
#define WV_SELECT64 wv_select64_portable
#include "wv_bv_impl.h"
#undef WV_SFX
#undef WV_TARGET
#undef WV_SELECT64

#define WV_SFX(x) x##_bmi2
#define WV_TARGET __attribute__((target("popcnt,bmi2")))
#define WV_SELECT64 wv_select64_bmi2
#include "wv_bv_impl.h"
#undef WV_SFX
#undef WV_TARGET
#undef WV_SELECT64
#define WV_DISPATCH(name, ...)                                                                     \
    (wv_isa_level_internal() == 2   ? name##_bmi2(__VA_ARGS__)                                     \
     : wv_isa_level_internal() == 1 ? name##_popcnt(__VA_ARGS__)                                   \
                                    : name##_portable(__VA_ARGS__))
#else
#define WV_DISPATCH(name, ...) (wv_isa_level_internal(), name##_portable(__VA_ARGS__))
#endif

/* ---- layout, build, validate ---------------------------------------------- */

static uint64_t ceil_div(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

/* Geometry of the index kinds (wv_bv_impl.h), indexed by wv_bv_t.index (checked first):
 * log2 block bits, sub-block count width, relative count width, log2 blocks per superblock,
 * log2 select sampling rate. */
typedef struct {
    unsigned bshift, cbits, rbits, spb, sel;
} bv_geom_t;
static const bv_geom_t bv_geom[2] = {
    {WV_BVF_BSHIFT, WV_BVF_CBITS, WV_BVF_RBITS, WV_BVF_SPB, WV_BVF_SEL},
    {WV_BVC_BSHIFT, WV_BVC_CBITS, WV_BVC_RBITS, WV_BVC_SPB, WV_BVC_SEL},
};

int wv_bv_layout(uint64_t nbits, uint64_t ones, uint32_t index, uint64_t *nwords, uint64_t *nblocks,
                 uint64_t *nsuper, uint64_t *nsel1, uint64_t *nsel0) {
    if (!nwords || !nblocks || !nsuper || !nsel1 || !nsel0 || ones > nbits)
        return WV_EINVAL;
    if (index != WV_BV_INDEX_FAST && index != WV_BV_INDEX_COMPACT)
        return WV_EINVAL;
    if (nbits > (UINT64_C(1) << 58)) /* keeps every byte count below 2^61 */
        return WV_EINVAL;
    const bv_geom_t *g = &bv_geom[index];
    uint64_t samp = UINT64_C(1) << g->sel;
    *nwords = ceil_div(nbits, 64);
    *nblocks = ceil_div(nbits, UINT64_C(1) << g->bshift) + 1;
    *nsuper = ((*nblocks - 1) >> g->spb) + 1;
    *nsel1 = ceil_div(ones, samp) + 1;
    *nsel0 = ceil_div(nbits - ones, samp) + 1;
    return WV_OK;
}

int wv_bv_count(const uint64_t *words, uint64_t nbits, uint64_t *ones) {
    if ((!words && nbits) || !ones)
        return WV_EINVAL;
    uint64_t nw = ceil_div(nbits, 64), c = 0;
    for (uint64_t i = 0; i < nw; i++)
        c += wv_popcount(words[i]);
    if ((nbits & 63) && (words[nw - 1] >> (nbits & 63)))
        return WV_ECORRUPT; /* padding bits must be zero */
    *ones = c;
    return WV_OK;
}

int wv_bv_pack_bools(const uint8_t *bools, uint64_t nbits, uint64_t *words) {
    if ((!bools || !words) && nbits)
        return WV_EINVAL;
    uint64_t nw = ceil_div(nbits, 64);
    for (uint64_t w = 0; w < nw; w++) {
        uint64_t x = 0, base = w * 64;
        unsigned m = (unsigned)(nbits - base < 64 ? nbits - base : 64);
        for (unsigned b = 0; b < m; b++)
            x |= (uint64_t)(bools[base + b] != 0) << b;
        words[w] = x;
    }
    return WV_OK;
}

/* Entry for block b (relative count `rel`), sub-block counts from the words. */
static uint64_t block_entry(const wv_bv_t *bv, uint64_t b, uint64_t rel, uint64_t *block_ones) {
    const bv_geom_t *g = &bv_geom[bv->index];
    const unsigned bshift = g->bshift, cbits = g->cbits, rbits = g->rbits;
    uint64_t sub_words = UINT64_C(1) << (bshift - 2 - 6);
    uint64_t e = rel & ((UINT64_C(1) << rbits) - 1), tot = 0;
    for (unsigned s = 0; s < 4; s++) {
        uint64_t c = 0;
        for (uint64_t k = 0; k < sub_words; k++) {
            uint64_t w = (b << (bshift - 6)) + s * sub_words + k;
            if (w < bv->nwords)
                c += wv_popcount(bv->words[w]);
        }
        if (s < 3)
            e |= c << (rbits + cbits * s);
        tot += c;
    }
    *block_ones = tot;
    return e;
}

/* Shared walk for build (out != NULL) and validate (out == NULL: compare). */
static int bv_index_walk(const wv_bv_t *bv, uint64_t *blocks, uint64_t *super, uint64_t *sel1,
                         uint64_t *sel0) {
    int cmp = blocks == NULL;
    const bv_geom_t *g = &bv_geom[bv->index];
    const unsigned spb = g->spb, rbits = g->rbits;
    uint64_t bbits = UINT64_C(1) << g->bshift;
    uint64_t samp = UINT64_C(1) << g->sel;
    uint64_t nreal = bv->nblocks - 1, ones = 0, j1 = 0, j0 = 0;
    for (uint64_t b = 0; b <= nreal; b++) {
        if ((b & ((UINT64_C(1) << spb) - 1)) == 0) {
            uint64_t s = b >> spb;
            if (cmp) {
                if (bv->super[s] != ones)
                    return WV_ECORRUPT;
            } else
                super[s] = ones;
        }
        uint64_t rel = ones - (cmp ? bv->super[b >> spb] : super[b >> spb]);
        uint64_t c = 0, e;
        if (b < nreal) {
            e = block_entry(bv, b, rel, &c);
        } else {
            e = rel & ((UINT64_C(1) << rbits) - 1);
        }
        if (cmp) {
            if (bv->blocks[b] != e)
                return WV_ECORRUPT;
        } else
            blocks[b] = e;
        if (b < nreal) {
            uint64_t zeros_before = b * bbits - ones;
            uint64_t bits_in = (b + 1) * bbits <= bv->nbits ? bbits : bv->nbits - b * bbits;
            uint64_t z = bits_in - c;
            while (j1 * samp < ones + c) {
                if (cmp ? bv->sel1[j1] != b : 0)
                    return WV_ECORRUPT;
                if (!cmp)
                    sel1[j1] = b;
                j1++;
            }
            while (j0 * samp < zeros_before + z) {
                if (cmp ? bv->sel0[j0] != b : 0)
                    return WV_ECORRUPT;
                if (!cmp)
                    sel0[j0] = b;
                j0++;
            }
        }
        ones += c;
    }
    if (ones != bv->ones || j1 + 1 != bv->nsel1 || j0 + 1 != bv->nsel0)
        return WV_ECORRUPT;
    if (cmp) {
        if (bv->sel1[j1] != nreal || bv->sel0[j0] != nreal)
            return WV_ECORRUPT;
    } else {
        sel1[j1] = nreal;
        sel0[j0] = nreal;
    }
    return WV_OK;
}

static int bv_check_shape(const wv_bv_t *bv) {
    uint64_t nw, nb, ns, n1, n0;
    if (!bv)
        return WV_EINVAL;
    if (bv->index != WV_BV_INDEX_FAST && bv->index != WV_BV_INDEX_COMPACT)
        return WV_ECORRUPT;
    if (wv_bv_layout(bv->nbits, bv->ones, bv->index, &nw, &nb, &ns, &n1, &n0) != WV_OK)
        return WV_ECORRUPT;
    if (nw != bv->nwords || nb != bv->nblocks || ns != bv->nsuper || n1 != bv->nsel1 ||
        n0 != bv->nsel0)
        return WV_ECORRUPT;
    if ((!bv->words && nw) || !bv->blocks || !bv->super || !bv->sel1 || !bv->sel0)
        return WV_EINVAL;
    return WV_OK;
}

int wv_bv_build(wv_bv_t *bv, uint64_t *blocks, uint64_t *super, uint64_t *sel1, uint64_t *sel0) {
    int st = bv_check_shape(bv);
    if (st != WV_OK)
        return st == WV_ECORRUPT ? WV_EINVAL : st;
    if (!blocks || !super || !sel1 || !sel0)
        return WV_EINVAL;
    uint64_t ones;
    st = wv_bv_count(bv->words, bv->nbits, &ones);
    if (st != WV_OK)
        return st;
    if (ones != bv->ones)
        return WV_EINVAL;
    return bv_index_walk(bv, blocks, super, sel1, sel0);
}

int wv_bv_validate(const wv_bv_t *bv) {
    int st = bv_check_shape(bv);
    if (st != WV_OK)
        return st;
    uint64_t ones;
    st = wv_bv_count(bv->words, bv->nbits, &ones);
    if (st != WV_OK)
        return WV_ECORRUPT;
    if (ones != bv->ones)
        return WV_ECORRUPT;
    return bv_index_walk(bv, NULL, NULL, NULL, NULL);
}

int wv_bv_size_bits(const wv_bv_t *bv, uint64_t *bits) {
    if (!bv || !bits)
        return WV_EINVAL;
    *bits = 64 * (bv->nwords + bv->nblocks + bv->nsuper + bv->nsel1 + bv->nsel0);
    return WV_OK;
}

/* ---- single queries --------------------------------------------------------- */

int wv_bv_access(const wv_bv_t *bv, uint64_t i, int *bit) {
    if (!bv || !bit)
        return WV_EINVAL;
    if (i >= bv->nbits)
        return WV_ERANGE;
    *bit = (int)((bv->words[i >> 6] >> (i & 63)) & 1);
    return WV_OK;
}

int wv_bv_rank1(const wv_bv_t *bv, uint64_t i, uint64_t *r) {
    if (!bv || !r)
        return WV_EINVAL;
    if (i > bv->nbits)
        return WV_ERANGE;
    *r = WV_DISPATCH(wv_bv_rank1_one, bv, i);
    return WV_OK;
}

int wv_bv_rank0(const wv_bv_t *bv, uint64_t i, uint64_t *r) {
    int st = wv_bv_rank1(bv, i, r);
    if (st == WV_OK)
        *r = i - *r;
    return st;
}

int wv_bv_select1(const wv_bv_t *bv, uint64_t k, uint64_t *pos) {
    if (!bv || !pos)
        return WV_EINVAL;
    if (k >= bv->ones)
        return WV_ERANGE;
    *pos = WV_DISPATCH(wv_bv_select_one, bv, k, 1);
    return WV_OK;
}

int wv_bv_select0(const wv_bv_t *bv, uint64_t k, uint64_t *pos) {
    if (!bv || !pos)
        return WV_EINVAL;
    if (k >= bv->nbits - bv->ones)
        return WV_ERANGE;
    *pos = WV_DISPATCH(wv_bv_select_one, bv, k, 0);
    return WV_OK;
}

/* ---- batch queries ---------------------------------------------------------- */

#define WV_BATCH_ARGS_OK(q, out, bad) ((q || !n) && (out || !n) && bad)

int wv_bv_access_batch(const wv_bv_t *bv, const uint64_t *i, size_t n, uint8_t *out,
                       size_t *bad) {
    if (!bv || !WV_BATCH_ARGS_OK(i, out, bad))
        return WV_EINVAL;
    return WV_DISPATCH(wv_bv_access_batch, bv, i, n, out, bad);
}

int wv_bv_rank1_batch(const wv_bv_t *bv, const uint64_t *i, size_t n, uint64_t *out,
                      size_t *bad) {
    if (!bv || !WV_BATCH_ARGS_OK(i, out, bad))
        return WV_EINVAL;
    return WV_DISPATCH(wv_bv_rank_batch, bv, i, n, out, bad, 1);
}

int wv_bv_rank0_batch(const wv_bv_t *bv, const uint64_t *i, size_t n, uint64_t *out,
                      size_t *bad) {
    if (!bv || !WV_BATCH_ARGS_OK(i, out, bad))
        return WV_EINVAL;
    return WV_DISPATCH(wv_bv_rank_batch, bv, i, n, out, bad, 0);
}

int wv_bv_select1_batch(const wv_bv_t *bv, const uint64_t *k, size_t n, uint64_t *out,
                        size_t *bad) {
    if (!bv || !WV_BATCH_ARGS_OK(k, out, bad))
        return WV_EINVAL;
    return WV_DISPATCH(wv_bv_select_batch, bv, k, n, out, bad, 1);
}

int wv_bv_select0_batch(const wv_bv_t *bv, const uint64_t *k, size_t n, uint64_t *out,
                        size_t *bad) {
    if (!bv || !WV_BATCH_ARGS_OK(k, out, bad))
        return WV_EINVAL;
    return WV_DISPATCH(wv_bv_select_batch, bv, k, n, out, bad, 0);
}
