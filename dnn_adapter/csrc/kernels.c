/*
 * kernels.c -- fused "decode and multiply" kernels for dnn_adapter (see
 * kernels.h for the contract).
 *
 * Method (the paper's execution insight, section 5: element-wise layers are
 * computed from the compressed form): the weight is walked a chunk of DNK_CAP
 * operands at a time. For a sparse tuple RAS, pass 1 turns gap codes into
 * column offsets (running sums of step[code], restarting at each delimiter)
 * and records the row segments; pass 2 rebuilds the chunk's values into a
 * float32 buffer (a table lookup, or the FloatCodec fields merged with integer
 * operations); pass 3 multiplies each row segment with the activations. The
 * chunk buffers (about 36 KiB) stay in L1/L2, so no dense weight and no O(nnz)
 * buffer is ever built. Dense element-wise rows skip pass 1.
 *
 * Cost: O(nnz * batch) multiply-adds plus O(stream) integer work; the batch-1
 * product is bound by the gathers x[col] (scalar, 8 independent chains).
 *
 * The direct convolution (dnk_layer_conv2d, dnk_csr_conv2d) runs the same walk (or CSR
 * rows) with pass 3 replaced: the input is first packed into the caller's workspace, a
 * band of output rows at a time (dnk_cv_t: one zero-padded plane per input channel,
 * filter column and stride phase), so every non-zero adds its weight times one contiguous
 * window of a plane to its output channel.
 *
 * Accumulation is float32 in a fixed order (8 partial sums at batch 1, one
 * per output column otherwise), so results are deterministic for a given ISA
 * level but differ from a dense GEMM by rounding.
 */
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#define DNK_X86 1
#else
#define DNK_X86 0
#endif

#define DNK_INLINE static inline __attribute__((always_inline))
#define DNK_LIKELY(x) __builtin_expect(!!(x), 1)
#define DNK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define DNK_CAP 1024 /* operands per chunk */

/* 8 floats as one value (GCC/Clang vector extension); loads and stores through memcpy
 * (unaligned). Macros, not functions: no vector-typed arguments or returns (-Wpsabi). */
typedef float dnk_v8 __attribute__((vector_size(32)));
#define DNK_LD8(v, p) memcpy(&(v), (p), 32)
#define DNK_ST8(p, v) memcpy((p), &(v), 32)

DNK_INLINE uint32_t dnk_ld(const void *p, uint64_t i, unsigned w) {
    return w == 1   ? ((const uint8_t *)p)[i]
           : w == 2 ? ((const uint16_t *)p)[i]
                    : ((const uint32_t *)p)[i];
}

/* bits [p, p + w) (w <= 8) of an LSB-first packed byte array */
DNK_INLINE uint32_t dnk_bits(const uint8_t *a, uint64_t p, unsigned w) {
    uint64_t byte = p >> 3;
    unsigned sh = (unsigned)(p & 7);
    uint32_t v = (uint32_t)a[byte] >> sh;
    if (sh + w > 8)
        v |= (uint32_t)a[byte + 1] << (8 - sh);
    return v & ((1u << w) - 1);
}

/* the rem-bit field (rem <= 8) at bit position p of the packed top bits (top_bytes long): one
 * unaligned 8-byte load away from the end of the array, the byte-wise read near it */
DNK_INLINE uint32_t dnk_top(const uint8_t *a, uint64_t top_bytes, uint64_t p, unsigned rem) {
    uint64_t byte = p >> 3;
    if (DNK_LIKELY(byte + 8 <= top_bytes)) {
        uint64_t v;
        memcpy(&v, a + byte, 8);
        return (uint32_t)(v >> (p & 7)) & ((1u << rem) - 1);
    }
    return dnk_bits(a, p, rem);
}

/* IEEE binary16 bits -> float (exact; integer ops, subnormals by an exact scale) */
DNK_INLINE float dnk_h2f(uint32_t h) {
    uint32_t s = (h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu, r;
    float f;
    if (e == 0x1F) {
        r = s | 0x7F800000u | (m << 13);
    } else if (e) {
        r = s | ((e + 112) << 23) | (m << 13);
    } else {
        f = (float)m * 5.9604644775390625e-8f; /* m * 2^-24, exact */
        memcpy(&r, &f, 4);
        r |= s;
    }
    memcpy(&f, &r, 4);
    return f;
}

/* a FloatCodec value as float32: raw sign/mantissa bits (sign above mb mantissa bits) and
 * the coded field (exponent + joint mantissa bits) assembled into a float32, bfloat16 or
 * float16 word, widened exactly */
/* 2 when every distance code has the same number of extra bits (Rice coding), else 1 */
DNK_INLINE int dnk_esc_kind(const dnk_layer_t *w) {
    for (uint64_t c = 1; c < w->gap_nstep; c++)
        if (w->gap_xbits[c] != w->gap_xbits[0])
            return 1;
    return 2;
}

DNK_INLINE float dnk_fval(uint32_t raw, uint32_t field, unsigned mb, int fmt) {
    const unsigned wsh = fmt == DNK_FMT_F32 ? 31 : 15;
    uint32_t wd = (raw & ((UINT32_C(1) << mb) - 1)) | (raw >> mb) << wsh | field << mb;
    float v;
    if (fmt == DNK_FMT_F16)
        return dnk_h2f(wd);
    if (fmt == DNK_FMT_BF16)
        wd <<= 16;
    memcpy(&v, &wd, 4);
    return v;
}

/* batch-1 sparse dot: scalar on purpose (AVX2 gathers lose to scalar loads on the x86 cores
 * measured, e.g. AMD EPYC: 1.4 ms vs 0.86 ms for 840k non-zeros); 8 independent chains. */
__attribute__((noinline)) static float dnk_gather_dot(const uint32_t *restrict cols,
                                                      const float *restrict vals, uint64_t n,
                                                      const float *restrict x) {
    float a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    uint64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        a0 += vals[k] * x[cols[k]];
        a1 += vals[k + 1] * x[cols[k + 1]];
        a2 += vals[k + 2] * x[cols[k + 2]];
        a3 += vals[k + 3] * x[cols[k + 3]];
        a4 += vals[k + 4] * x[cols[k + 4]];
        a5 += vals[k + 5] * x[cols[k + 5]];
        a6 += vals[k + 6] * x[cols[k + 6]];
        a7 += vals[k + 7] * x[cols[k + 7]];
    }
    float s = 0;
    for (; k < n; k++)
        s += vals[k] * x[cols[k]];
    return ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7)) + s;
}

/* a direct convolution as the walks see it. The input is packed (dnk_layer_conv2d): per
 * image and channel, sh * kw planes of hq rows of wq floats, plane (ph, j) holding padded
 * rows ph, ph + sh, ... at columns j * dw, j * dw + sw, ...; so tap (i, j) of output row oy
 * reads row oy + (i * dh) / sh of plane ((i * dh) % sh, j), and an operand's window is one
 * contiguous run of oh * wq floats. */
typedef struct dnk_cv dnk_cv_t;
/* a piece of the convolution (conv_seg): one output channel's operands */
typedef void (*dnk_seg_fn)(const uint32_t *cols, const float *vals, uint64_t n,
                           const dnk_cv_t *cv, const float *x, float *y);
/* one packed row (conv_pack, stride 1): d[c] = c0 <= c < c1 ? s[c] : 0 for c < wq */
typedef void (*dnk_row_fn)(float *d, const float *s, int64_t c0, int64_t c1, uint64_t wq);
struct dnk_cv {
    const dnk_conv_t *g;
    dnk_seg_fn seg;      /* the ISA level's piece (used by every walk) */
    double inv_kk;       /* 1 / (kh * kw) */
    uint64_t kk;         /* kh * kw */
    uint64_t cstride;    /* packed floats per input channel */
    const uint64_t *tap; /* tap i * kw + j -> its window's offset within the channel */
    uint64_t len;        /* floats each operand adds per image: oh * wq */
    uint64_t oplane;     /* an image's (wide) output plane: oh * wq */
    uint64_t xstride;    /* an image's packed input: cin * cstride floats */
};

/* column c = ci * kh * kw + t -> ci * cstride + tap[t]. The quotient comes from a double
 * product (c < 2^32, so it is off by at most one) and is corrected exactly. */
DNK_INLINE uint64_t dnk_conv_off(const dnk_cv_t *cv, uint64_t c) {
    uint64_t ci = (uint64_t)((double)c * cv->inv_kk);
    ci -= ci * cv->kk > c;
    ci += (ci + 1) * cv->kk <= c;
    return ci * cv->cstride + cv->tap[c - ci * cv->kk];
}

#define DNK_SFX(x) x##_portable
#define DNK_TARGET
#include "dnk_impl.h"
#undef DNK_SFX
#undef DNK_TARGET

#if DNK_X86
#define DNK_SFX(x) x##_avx2
#define DNK_TARGET __attribute__((target("avx2,fma")))
#include "dnk_impl.h"
#undef DNK_SFX
#undef DNK_TARGET
#include "dnk_avx512.h"
#endif

/* ---- ISA dispatch ------------------------------------------------------------------------ */
static int g_level = -1;

static int cpu_level(void) {
#if DNK_X86 && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")))
        return 0;
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                   __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2")
               ? 2
               : 1;
#else
    return 0;
#endif
}

int dnk_isa_level(void) {
    if (g_level < 0)
        g_level = cpu_level();
    return g_level;
}

int dnk_set_isa_level(int level) {
    int cap = cpu_level();
    g_level = level < 0 ? cap : (level > cap ? cap : level);
    return g_level;
}

/* ---- exported entry points ----------------------------------------------------------------- */
static int mul_ok(uint64_t a, uint64_t b) { return b == 0 || a <= UINT64_MAX / b; }

/* the layer's fields (not the activations) for a product with yt rows of `batch` floats */
static int check_layer(const dnk_layer_t *w, uint64_t batch) {
    if (w->ncols == 0 || w->ncols >= (UINT64_C(1) << 32) || w->row_begin > w->row_end ||
        w->row_end > w->nrows || !mul_ok(w->nrows, batch) || !mul_ok(w->ncols, batch))
        return DNK_EINVAL;
    /* values */
    if (w->val_kind == DNK_VAL_F32) {
        if (!w->vals && w->nnz)
            return DNK_EINVAL;
    } else if (w->val_kind == DNK_VAL_DICT || w->val_kind == DNK_VAL_FLOAT) {
        if (!w->vcodes || (w->vcode_width != 1 && w->vcode_width != 2))
            return DNK_EINVAL;
        if (w->val_kind == DNK_VAL_DICT && (!w->vtable || w->vtable_n == 0))
            return DNK_EINVAL;
        if (w->val_kind == DNK_VAL_FLOAT) {
            uint32_t wbits = w->val_fmt == DNK_FMT_F32 ? 32 : 16;
            uint32_t mb = w->mant_bits, fb = w->field_bits;
            if (w->val_fmt < 0 || w->val_fmt > DNK_FMT_F16 || !w->etable || w->etable_n == 0 ||
                !w->planes || mb == 0 || fb == 0 || fb > 16 || 1 + mb + fb != wbits ||
                w->nplanes != (mb + 1) / 8)
                return DNK_EINVAL;
            uint64_t rem = (mb + 1) % 8;
            if (rem && (!w->top || w->top_bytes < (w->nnz * rem + 7) / 8 ||
                        !mul_ok(w->nnz, rem)))
                return DNK_EINVAL;
            for (uint64_t c = 0; c < w->etable_n; c++)
                if (w->etable[c] >> fb)
                    return DNK_ECORRUPT;
        }
    } else {
        return DNK_EINVAL;
    }
    uint64_t rows = w->row_end - w->row_begin;
    if (w->gaps) {
        if ((w->gap_width != 1 && w->gap_width != 2 && w->gap_width != 4) || !w->gap_step ||
            w->gap_nstep > w->gap_delim || w->op_begin > w->nnz)
            return DNK_EINVAL;
        if (w->gap_xbits && (!w->gap_extra || w->gap_extra_bits / 8 > UINT64_MAX - 8 ||
                             w->gap_extra_bytes < w->gap_extra_bits / 8 + 8))
            return DNK_EINVAL;
        if (w->gap_xbits)
            for (uint64_t c = 0; c < w->gap_nstep; c++)
                if (w->gap_xbits[c] > 32)
                    return DNK_EINVAL;
        /* step = skipped zeros + 1 >= 1 (the binding checks 1..ncols): a 0 would repeat a
         * column, or point at column -1 before a row's first non-zero, which the batch > 1
         * walk would then read out of bounds */
        for (uint64_t c = 0; c < w->gap_nstep; c++)
            if (w->gap_step[c] == 0)
                return DNK_EINVAL;
        if (!w->gap_xbits && w->gap_extra_bits)
            return DNK_EINVAL;
        if (w->val_kind != DNK_VAL_F32 && w->vcode_len != w->gap_len)
            return DNK_EINVAL;
    } else {
        if (!mul_ok(rows, w->ncols + 1) || !mul_ok(w->nrows, w->ncols) ||
            w->nnz != w->nrows * w->ncols || w->op_begin != w->row_begin * w->ncols)
            return DNK_EINVAL;
        if (w->val_kind != DNK_VAL_F32 && w->vcode_len < rows * (w->ncols + 1))
            return DNK_EINVAL;
    }
    return DNK_OK;
}

int dnk_layer_mm(const dnk_layer_t *w, const float *xt, uint64_t batch, float *yt,
                 uint64_t *bad_row) {
    if (!w || !bad_row || batch == 0 || !xt || !yt)
        return DNK_EINVAL;
    *bad_row = 0;
    int st = check_layer(w, batch);
    if (st != DNK_OK)
        return st;
    uint64_t rows = w->row_end - w->row_begin;
    memset(yt + w->row_begin * batch, 0, rows * batch * sizeof(float));
    if (rows == 0)
        return DNK_OK;
#if DNK_X86
    if (dnk_isa_level() >= 2) {
        int rc = dnk512_sparse(w, xt, batch, yt, bad_row, NULL);
        if (rc <= 0)
            return rc;
    }
    if (dnk_isa_level() >= 1)
        return layer_mm_avx2(w, xt, batch, yt, bad_row);
#endif
    return layer_mm_portable(w, xt, batch, yt, bad_row);
}

#define DNK_CONV_BAND (UINT64_C(1) << 20) /* bytes of packed input per band: half an L2 */

/* The packed layout of a convolution (see dnk_cv_t), a band of output rows at a time: the
 * band's input windows (every plane's rows of the band, plus the taps' row shifts) are
 * packed into about DNK_CONV_BAND bytes, so they stay in L2 while every output channel
 * reads them; each band walks the streams once more (a small fraction of its
 * multiply-adds). */
typedef struct {
    uint64_t oh, ow, wq;  /* output rows and columns; packed row length (>= ow) */
    uint64_t shift;       /* the taps' largest row shift in a plane: dh (kh - 1) / sh */
    uint64_t band;        /* output rows per band */
    uint64_t plane;       /* floats of a packed plane: (band + shift) rows of wq, to 16 */
    uint64_t cstride;     /* a channel's planes: sh * kw * plane */
    uint64_t xstride;     /* a band's packed input: cin * cstride */
    uint64_t wide;        /* floats of a band's wide output (wq > ow), else 0 (written direct) */
} dnk_conv_plan_t;

static int conv_plan(const dnk_conv_t *g, uint64_t nrows, dnk_conv_plan_t *p) {
    const uint64_t lim = UINT64_C(1) << 31, k16 = UINT64_C(1) << 16;
    if (!g || g->batch == 0 || g->cin == 0 || g->h == 0 || g->w == 0 || g->kh == 0 ||
        g->kw == 0 || g->sh == 0 || g->sw == 0 || g->dh == 0 || g->dw == 0 || g->batch > lim ||
        g->cin > lim || g->h > lim || g->w > lim || g->kh > k16 || g->kw > k16 || g->sh > k16 ||
        g->sw > k16 || g->dh > k16 || g->dw > k16 || g->ph > k16 || g->pw > k16 ||
        g->kh * g->kw > DNK_CONV_MAXTAP || nrows > lim)
        return DNK_EINVAL;
    const uint64_t hp = g->h + 2 * g->ph, wp = g->w + 2 * g->pw; /* < 2^32 */
    if (g->dh * (g->kh - 1) >= hp || g->dw * (g->kw - 1) >= wp)
        return DNK_EINVAL; /* the kernel does not fit */
    p->oh = (hp - g->dh * (g->kh - 1) - 1) / g->sh + 1;
    p->ow = (wp - g->dw * (g->kw - 1) - 1) / g->sw + 1;
    /* rows of 16-float multiples (aligned loads) where that adds at most 40% of columns */
    const uint64_t r16 = (p->ow + 15) & ~(uint64_t)15;
    p->wq = r16 * 5 <= p->ow * 7 ? r16 : p->ow;
    p->shift = g->dh * (g->kh - 1) / g->sh;
    const uint64_t planes = g->sh * g->kw; /* <= 2^32 */
    /* a packed row of every plane of every channel: < 2^31 * 2^32 * 2^33 floats could wrap */
    if (!mul_ok(planes, g->cin) || !mul_ok(planes * g->cin, p->wq * 4))
        return DNK_EINVAL;
    const uint64_t rowb = planes * g->cin * p->wq * 4;
    uint64_t band = DNK_CONV_BAND / rowb;
    band = band > p->shift ? band - p->shift : 1;
    p->band = band < p->oh ? band : p->oh;
    const uint64_t rows = p->band + p->shift; /* <= oh + shift < 2^33 */
    if (!mul_ok(rows, p->wq) || rows * p->wq > (UINT64_C(1) << 60))
        return DNK_EINVAL;
    p->plane = (rows * p->wq + 15) & ~(uint64_t)15;
    if (!mul_ok(p->plane, planes) || !mul_ok(p->plane * planes, g->cin))
        return DNK_EINVAL;
    p->cstride = p->plane * planes;
    p->xstride = p->cstride * g->cin;
    /* the output, and a band's wide output */
    if (!mul_ok(p->oh, p->ow) || !mul_ok(p->oh * p->ow, g->batch) ||
        !mul_ok(p->oh * p->ow * g->batch, nrows) || !mul_ok(p->band * p->wq, nrows))
        return DNK_EINVAL;
    p->wide = p->wq != p->ow ? p->band * p->wq * nrows : 0;
    const uint64_t big = UINT64_C(1) << 60;
    if (p->xstride >= big || p->wide >= big || p->oh * p->ow * g->batch * nrows >= big)
        return DNK_EINVAL;
    return DNK_OK;
}

/* the geometry the kernels run: a pointwise convolution (1 x 1 taps, stride 1, no padding)
 * whose whole input fits one band is one row of h * w floats per channel (h = 1), so its
 * output rows need no per-row alignment columns */
static const dnk_conv_t *conv_geom(const dnk_conv_t *cv, dnk_conv_t *flat) {
    if (!cv || cv->kh != 1 || cv->kw != 1 || cv->sh != 1 || cv->sw != 1 || cv->ph || cv->pw ||
        cv->h > (UINT64_C(1) << 31) || cv->w > (UINT64_C(1) << 31) ||
        cv->cin > (UINT64_C(1) << 31) || cv->h * cv->w > (UINT64_C(1) << 31) ||
        cv->cin * cv->h * cv->w * sizeof(float) > DNK_CONV_BAND)
        return cv;
    *flat = *cv;
    flat->w = cv->h * cv->w;
    flat->h = 1;
    return flat;
}

/* floats of workspace a plan needs: the packed band, a band's wide output, alignment */
static uint64_t conv_ws(const dnk_conv_plan_t *p) { return 16 + p->xstride + p->wide; }

uint64_t dnk_conv2d_workspace(const dnk_conv_t *cv, uint64_t nrows) {
    dnk_conv_plan_t p;
    dnk_conv_t flat;
    if (conv_plan(conv_geom(cv, &flat), nrows, &p) != DNK_OK)
        return 0;
    return conv_ws(&p);
}

/* the entry points' checks: the geometry the kernels run (conv_geom, in *flat), its plan,
 * the weight's columns and the workspace length; NULL when any fails */
static const dnk_conv_t *conv_checked(const dnk_conv_t *cv, uint64_t nrows, uint64_t ncols,
                                      uint64_t ws_len, dnk_conv_t *flat, dnk_conv_plan_t *p) {
    cv = conv_geom(cv, flat);
    if (conv_plan(cv, nrows, p) != DNK_OK || ncols != cv->cin * cv->kh * cv->kw ||
        ws_len < conv_ws(p))
        return NULL;
    return cv;
}

static void pack_row(float *d, const float *s, int64_t c0, int64_t c1, uint64_t wq) {
    memset(d, 0, (uint64_t)c0 * sizeof(float));
    memcpy(d + c0, s + c0, (uint64_t)(c1 - c0) * sizeof(float));
    memset(d + c1, 0, (wq - (uint64_t)c1) * sizeof(float));
}

/* one image x (cin x h x w) -> the packed planes (dnk_cv_t) of the band whose first output
 * row is r0 (plane row r: padded input row (r0 + r) * sh + q), zeros where a tap reads
 * padding */
static void conv_pack(const dnk_conv_t *g, const dnk_conv_plan_t *p, const float *x, float *xp,
                      uint64_t r0, uint64_t nr, dnk_row_fn row) {
    const int64_t h = (int64_t)g->h, w = (int64_t)g->w, sw = (int64_t)g->sw;
    const int64_t wq = (int64_t)p->wq;
    const uint64_t rows = nr + p->shift;
    for (uint64_t ci = 0; ci < g->cin; ci++) {
        const float *src = x + ci * g->h * g->w;
        float *dst = xp + ci * p->cstride;
        for (uint64_t q = 0; q < g->sh; q++)
            for (uint64_t j = 0; j < g->kw; j++) {
                float *d = dst + (q * g->kw + j) * p->plane;
                const int64_t c_at = (int64_t)(j * g->dw) - (int64_t)g->pw; /* column 0 */
                /* the columns c with 0 <= c_at + c * sw < w */
                int64_t c0 = c_at >= 0 ? 0 : (-c_at + sw - 1) / sw;
                int64_t c1 = c_at >= w ? 0 : (w - c_at + sw - 1) / sw;
                c0 = c0 < wq ? c0 : wq;
                c1 = c1 < wq ? c1 : wq;
                c1 = c1 > c0 ? c1 : c0;
                for (uint64_t r = 0; r < rows; r++) {
                    float *dr = d + r * p->wq;
                    const int64_t R = (int64_t)((r0 + r) * g->sh + q) - (int64_t)g->ph;
                    if (R < 0 || R >= h || c1 == c0) {
                        memset(dr, 0, p->wq * sizeof(float));
                        continue;
                    }
                    const float *sr = src + R * w + c_at; /* column 0 (maybe before the row) */
                    if (sw == 1) {
                        row(dr, sr, c0, c1, p->wq);
                        continue;
                    }
                    memset(dr, 0, (uint64_t)c0 * sizeof(float));
                    for (int64_t c = c0; c < c1; c++)
                        dr[c] = sr[c * sw];
                    memset(dr + c1, 0, (uint64_t)(wq - c1) * sizeof(float));
                }
                memset(d + rows * p->wq, 0, (p->plane - rows * p->wq) * sizeof(float));
            }
    }
}

/* the convolution's weight: a sparse layer's streams, or the cached CSR form */
typedef struct {
    const dnk_layer_t *w; /* NULL: CSR */
    uint64_t nrows;
    const uint64_t *row_ptr;
    const uint32_t *cols;
    const float *vals;
    uint64_t nnz;
} dnk_conv_src_t;

/* the bands of every image (conv_plan) through the walk or the CSR rows; y is nrows x
 * batch x oh x ow, checked by the caller (and the layer's fields, for a walk) */
static int conv_bands(const dnk_conv_src_t *src, const dnk_conv_t *cv, const dnk_conv_plan_t *p,
                      const float *x, float *ws, float *y, uint64_t *bad_row) {
    const uint64_t nrows = src->nrows, oplane = p->oh * p->ow, B = cv->batch * oplane;
    if (!p->wide)
        memset(y, 0, nrows * B * sizeof(float));
    if (nrows == 0)
        return DNK_OK;
    float *xp = ws + ((64 - (uintptr_t)ws % 64) % 64) / sizeof(float); /* ws: float-aligned */
    float *yw = xp + p->xstride; /* a band's wide output rows (p->wide) */
    uint64_t tap[DNK_CONV_MAXTAP];
    for (uint64_t i = 0; i < cv->kh; i++)
        for (uint64_t j = 0; j < cv->kw; j++)
            tap[i * cv->kw + j] = ((i * cv->dh) % cv->sh * cv->kw + j) * p->plane +
                                  (i * cv->dh) / cv->sh * p->wq;
    dnk_conv_t one = *cv;
    one.batch = 1;
    const uint64_t kk = cv->kh * cv->kw;
    dnk_row_fn row = pack_row;
    dnk_seg_fn seg = conv_seg_portable; /* at level 2 also under the AVX2 walks */
#if DNK_X86
    if (dnk_isa_level() >= 2)
        row = pack_row_512;
    seg = dnk_isa_level() >= 2 ? conv_seg_512 : dnk_isa_level() >= 1 ? conv_seg_avx2 : seg;
#endif
    int rc = DNK_OK;
    for (uint64_t b = 0; b < cv->batch && rc == DNK_OK; b++)
        for (uint64_t r0 = 0; r0 < p->oh && rc == DNK_OK; r0 += p->band) {
            const uint64_t nr = p->oh - r0 < p->band ? p->oh - r0 : p->band;
            conv_pack(&one, p, x + b * cv->cin * cv->h * cv->w, xp, r0, nr, row);
            const dnk_cv_t run = {&one, seg, 1.0 / (double)kk, kk, p->cstride, tap, nr * p->wq,
                                  nr * p->wq, p->xstride};
            /* the band's rows: in y directly (B floats apart), or wide (nr * wq apart) */
            const uint64_t rs = p->wide ? nr * p->wq : B;
            float *yb = p->wide ? yw : y + b * oplane + r0 * p->ow;
            if (p->wide)
                memset(yw, 0, nrows * rs * sizeof(float));
            if (src->w) {
                rc = 1;
#if DNK_X86
                if (dnk_isa_level() >= 2)
                    rc = dnk512_sparse(src->w, xp, rs, yb, bad_row, &run);
                if (rc > 0 && dnk_isa_level() >= 1)
                    rc = layer_conv_avx2(src->w, &run, rs, xp, yb, bad_row);
#endif
                if (rc > 0)
                    rc = layer_conv_portable(src->w, &run, rs, xp, yb, bad_row);
            } else {
                for (uint64_t r = 0; r < nrows; r++) {
                    const uint64_t a0 = src->row_ptr[r], a1 = src->row_ptr[r + 1];
                    if (a1 < a0 || a1 > src->nnz) {
                        rc = DNK_ECORRUPT;
                        break;
                    }
                    for (uint64_t a = a0; a < a1; a += DNK_CAP) /* conv_seg: <= DNK_CAP */
                        seg(src->cols + a, src->vals + a, a1 - a < DNK_CAP ? a1 - a : DNK_CAP,
                            &run, xp, yb + r * rs);
                }
            }
            if (rc == DNK_OK && p->wide) /* the ow valid columns of each wide row */
                for (uint64_t r = 0; r < nrows; r++)
                    for (uint64_t i = 0; i < nr; i++)
                        memcpy(y + r * B + b * oplane + (r0 + i) * p->ow, yw + r * rs + i * p->wq,
                               p->ow * sizeof(float));
        }
    return rc;
}

int dnk_layer_conv2d(const dnk_layer_t *w, const dnk_conv_t *cv, const float *x, float *ws,
                     uint64_t ws_len, float *y, uint64_t *bad_row) {
    if (!w || !cv || !bad_row || !x || !ws || !y || !w->gaps)
        return DNK_EINVAL;
    *bad_row = 0;
    dnk_conv_plan_t p;
    dnk_conv_t flat;
    if (!(cv = conv_checked(cv, w->nrows, w->ncols, ws_len, &flat, &p)))
        return DNK_EINVAL;
    if (w->row_begin != 0 || w->row_end != w->nrows || w->op_begin != 0)
        return DNK_EINVAL;
    int st = check_layer(w, cv->batch * p.oh * p.ow);
    if (st != DNK_OK)
        return st;
    const dnk_conv_src_t src = {w, w->nrows, NULL, NULL, NULL, 0};
    return conv_bands(&src, cv, &p, x, ws, y, bad_row);
}

int dnk_csr_conv2d(uint64_t nrows, uint64_t ncols, const uint64_t *row_ptr, const uint32_t *cols,
                   const float *vals, uint64_t nnz, const dnk_conv_t *cv, const float *x,
                   float *ws, uint64_t ws_len, float *y) {
    if (!row_ptr || !cv || !x || !ws || !y || (nnz && (!cols || !vals)))
        return DNK_EINVAL;
    dnk_conv_plan_t p;
    dnk_conv_t flat;
    if (ncols >= (UINT64_C(1) << 32) || !(cv = conv_checked(cv, nrows, ncols, ws_len, &flat, &p)))
        return DNK_EINVAL;
    if (row_ptr[0] != 0 || row_ptr[nrows] != nnz)
        return DNK_ECORRUPT;
    uint64_t bad = 0;
    const dnk_conv_src_t src = {NULL, nrows, row_ptr, cols, vals, nnz};
    return conv_bands(&src, cv, &p, x, ws, y, &bad);
}

int dnk_csr_mm(uint64_t nrows, uint64_t ncols, const uint64_t *row_ptr, const uint32_t *cols,
               const float *vals, uint64_t nnz, const float *xt, uint64_t batch, float *yt) {
    if (!row_ptr || batch == 0 || !xt || !yt || (nnz && (!cols || !vals)) || ncols == 0 ||
        ncols >= (UINT64_C(1) << 32) || !mul_ok(nrows, batch))
        return DNK_EINVAL;
    if (row_ptr[0] != 0 || row_ptr[nrows] != nnz)
        return DNK_ECORRUPT;
    memset(yt, 0, nrows * batch * sizeof(float));
#if DNK_X86
    if (dnk_isa_level() >= 1)
        return csr_mm_avx2(nrows, row_ptr, cols, vals, nnz, xt, batch, yt);
#endif
    return csr_mm_portable(nrows, row_ptr, cols, vals, nnz, xt, batch, yt);
}
