/*
 * dnk_avx512.h -- the sparse product's walk with AVX-512 (ISA level 2), included once by
 * kernels.c on x86-64 after the AVX2 kernels (whose tiles multiply at batch > 1).
 * Arguments were validated by kernels.c.
 *
 * What: y[r] = sum over row r's non-zeros of value * x[column], straight from the gap
 * stream (plain or Rice-coded distance codes, 1- or 2-byte symbols, a delimiter closing
 * each row) and the value source (float32 array, dictionary codes, or float32 FloatCodec
 * parts with three whole byte planes), 16 operands per step and no chunk buffers: the
 * distance codes are looked up in registers (codes < 128: two-register permutes; longer
 * ones gathered), Rice low bits gathered from their packed stream, the distances turned
 * into columns by an in-register prefix sum (4 shifted adds) carried across steps, the
 * values rebuilt with integer ops (or looked up in the dictionary), x gathered at the
 * columns, and one FMA accumulates 16 lanes. A delimiter inside a step ends it early (the
 * lanes before it are the row's last operands); a full step advances by 16 through a
 * predicted branch, so the next step's loads do not wait on this one's delimiter search.
 *
 * Why: the scalar walk (dnk_impl.h, sparse_dot_run) spends about 8 cycles per operand on
 * a dependent chain of byte loads, table loads and integer merges; here those are vector
 * ops over 16 operands (95%-sparse 4096x4096 fp32, Intel Xeon: 2.40 -> 0.58 ms).
 *
 * Checks, as in the scalar walk: a symbol that is neither a distance code nor the
 * delimiter, a column past the row, a value code outside its table, a value-stream symbol
 * that is not the value delimiter where the gap stream has one, a stream that ends early
 * or has symbols left over: DNK_ECORRUPT (columns and codes are clamped before every
 * gather, so no read leaves its array meanwhile). Masked loads never touch the lanes past
 * the stream's end.
 *
 * Summation order: 16 lane partial sums per row, then a tree sum; it differs from the
 * other levels' (float32 rounding, as documented in kernels.h).
 */
#include <immintrin.h>

#define DNK_T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,bmi,bmi2")))

/* x: the 16 lanes' inclusive prefix sums (4 shifted adds; alignr with zeros shifts lanes up) */
DNK_INLINE DNK_T512 __m512i dnk512_prefix(__m512i v) {
    const __m512i z = _mm512_setzero_si512();
    v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, z, 15));
    v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, z, 14));
    v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, z, 12));
    return _mm512_add_epi32(v, _mm512_alignr_epi32(v, z, 8));
}

/* 16 lookups in a table of up to 128 dwords held in 8 registers (t[0..7], 16 entries each):
 * two-register permutes pick within 64, blends on index bits 5 and 6 pick among them.
 * Lanes outside m are 0; indices must be < 128 in m. */
DNK_INLINE DNK_T512 __m512i dnk512_lut128(const __m512i *t, __m512i c, __mmask16 m) {
    const __mmask16 b5 = _mm512_test_epi32_mask(c, _mm512_set1_epi32(32));
    const __mmask16 b6 = _mm512_test_epi32_mask(c, _mm512_set1_epi32(64));
    __m512i a = _mm512_mask_blend_epi32(b5, _mm512_permutex2var_epi32(t[0], c, t[1]),
                                        _mm512_permutex2var_epi32(t[2], c, t[3]));
    __m512i b = _mm512_mask_blend_epi32(b5, _mm512_permutex2var_epi32(t[4], c, t[5]),
                                        _mm512_permutex2var_epi32(t[6], c, t[7]));
    return _mm512_maskz_mov_epi32(m, _mm512_mask_blend_epi32(b6, a, b));
}

/* 16 symbols of width w (1 or 2 bytes) from position i, lanes outside m zero */
DNK_INLINE DNK_T512 __m512i dnk512_ld(const void *p, uint64_t i, unsigned w, __mmask16 m) {
    if (w == 1)
        return _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, (const uint8_t *)p + i));
    return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p + i));
}

/* one step over the operand lanes om at stream position i / operand o: distances ->
 * columns (carry: the running column), values, x gathered, acc += v * x; bad collects
 * the lanes' errors. A macro over the run's locals (kind, vw: constants there). */
#define DNK512_STEP(om)                                                                    \
    do {                                                                                \
        /* distances -> columns */                                                      \
        const __mmask16 ok = _mm512_mask_cmplt_epu32_mask(om, s, vnstep);               \
        bad |= om & (__mmask16)~ok;                                                     \
        const __mmask16 far = _mm512_mask_cmpgt_epu32_mask(ok, s, v127);                \
        __m512i st = dnk512_lut128(tst, s, ok & (__mmask16)~far);                       \
        if (far)                                                                        \
            st = _mm512_mask_i32gather_epi32(st, far, s, (const int *)w->gap_step, 4);  \
        if (rc) { /* Rice: + the operand's `rice` low bits, at bit o * rice */          \
            const uint64_t bp = o * rice;                                               \
            const __m512i q = _mm512_add_epi32(_mm512_set1_epi32((int)(bp & 7)), lane_r); \
            const __m512i wv = _mm512_mask_i32gather_epi32(                              \
                _mm512_setzero_si512(), om, _mm512_srli_epi32(q, 3),                    \
                (const int *)(extra + (bp >> 3)), 1);                                   \
            st = _mm512_add_epi32(                                                      \
                st, _mm512_and_si512(_mm512_srlv_epi32(wv, _mm512_and_si512(q, seven)), \
                                     rmask));                                           \
        }                                                                               \
        __m512i pos = _mm512_add_epi32(dnk512_prefix(st), carry);                       \
        bad |= _mm512_mask_cmpgt_epu32_mask(om, pos, vncols);                           \
        carry = _mm512_permutexvar_epi32(l15, pos);                                     \
        __m512i col = _mm512_min_epu32(_mm512_sub_epi32(pos, one), vlast);              \
        /* values */                                                                    \
        __m512 v;                                                                       \
        if (kind == DNK_VAL_F32) {                                                      \
            v = _mm512_maskz_loadu_ps(om, vals + o);                                    \
        } else {                                                                        \
            const __m512i c = dnk512_ld(vc, i, vw, om);                                 \
            const __mmask16 cok = _mm512_mask_cmplt_epu32_mask(om, c, vnt);             \
            bad |= om & (__mmask16)~cok;                                                \
            __m512i e; /* table entry of the code (0 for lanes outside cok) */          \
            if (small)                                                                  \
                e = _mm512_maskz_permutex2var_epi32(cok, t_lo, c, t_hi);                \
            else if (kind == DNK_VAL_DICT)                                              \
                e = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), cok, c,         \
                                                (const int *)tab, 4);                   \
            else                                                                        \
                e = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), cok, c,         \
                                                (const int *)et32, 4);                  \
            if (kind == DNK_VAL_DICT) {                                                 \
                v = _mm512_castsi512_ps(e);                                             \
            } else {                                                                    \
                __m512i b0 = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(om, p0 + o));    \
                __m512i b1 =                                                            \
                    _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(om, p0 + nnz + o));       \
                __m512i b2 =                                                            \
                    _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(om, p0 + 2 * nnz + o));   \
                __m512i wd = _mm512_or_si512(b0, _mm512_slli_epi32(b1, 8));             \
                wd = _mm512_or_si512(wd, _mm512_slli_epi32(_mm512_and_si512(b2, m7f), 16));\
                wd = _mm512_or_si512(wd, _mm512_slli_epi32(_mm512_srli_epi32(b2, 7), 31));\
                v = _mm512_castsi512_ps(_mm512_or_si512(wd, e));                        \
            }                                                                           \
        }                                                                               \
        if (mm) { /* batch > 1: into the chunk buffers, multiplied by the tiles */      \
            _mm512_storeu_si512(cb + cnt, col); /* whole: loads forward from it */      \
            _mm512_storeu_ps(vb + cnt, v);                                              \
        } else {                                                                        \
            __m512 xv = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), om, col, x, 4);   \
            acc = _mm512_fmadd_ps(v, xv, acc);                                          \
        }                                                                               \
    } while (0)

/* 8 columns' window offsets (dnk_conv_off): the quotient by kh * kw from a double product
 * (c < 2^27 here: exact to within one), corrected with integer multiplies, then
 * ci * cstride + tap[remainder] in 64 bits */
DNK_INLINE DNK_T512 __m512i dnk512_conv_off8(const dnk_cv_t *cv, __m256i c) {
    const __m256i kk = _mm256_set1_epi32((int)cv->kk), one = _mm256_set1_epi32(1);
    __m256i q = _mm512_cvttpd_epu32(_mm512_mul_pd(_mm512_cvtepu32_pd(c), _mm512_set1_pd(cv->inv_kk)));
    q = _mm256_sub_epi32(q, _mm256_srli_epi32(_mm256_sub_epi32(c, _mm256_mullo_epi32(q, kk)), 31));
    q = _mm256_add_epi32(q, _mm256_andnot_si256(_mm256_srai_epi32(
                             _mm256_sub_epi32(_mm256_sub_epi32(c, _mm256_mullo_epi32(q, kk)), kk), 31), one));
    const __m256i r = _mm256_sub_epi32(c, _mm256_mullo_epi32(q, kk));
    return _mm512_add_epi64(
        _mm512_mullo_epi64(_mm512_cvtepu32_epi64(q), _mm512_set1_epi64((long long)cv->cstride)),
        _mm512_i32gather_epi64(r, (const long long *)cv->tap, 8));
}

/* conv_run_512's tail: nf (<= 3) whole vectors and, if mk, one masked by mt; even and odd
 * operands in separate accumulators (a chain per vector would wait on the FMA latency) */
DNK_INLINE DNK_T512 void conv_tail_512(const uint64_t *restrict off, const float *restrict vals,
                                       uint64_t n, const float *restrict xt,
                                       float *restrict yt, const int nf, const int mk,
                                       const __mmask16 mt) {
    __m512 a[4], c[4];
    for (int q = 0; q < 4; q++)
        a[q] = c[q] = _mm512_setzero_ps();
    for (int q = 0; q < nf; q++)
        a[q] = _mm512_loadu_ps(yt + 16 * q);
    if (mk)
        a[nf] = _mm512_maskz_loadu_ps(mt, yt + 16 * nf);
    uint64_t k = 0;
    for (; k + 2 <= n; k += 2) {
        const float *p = xt + off[k], *r = xt + off[k + 1];
        const __m512 v = _mm512_set1_ps(vals[k]), u = _mm512_set1_ps(vals[k + 1]);
        for (int q = 0; q < nf; q++) {
            a[q] = _mm512_fmadd_ps(v, _mm512_loadu_ps(p + 16 * q), a[q]);
            c[q] = _mm512_fmadd_ps(u, _mm512_loadu_ps(r + 16 * q), c[q]);
        }
        if (mk) {
            a[nf] = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(mt, p + 16 * nf), a[nf]);
            c[nf] = _mm512_fmadd_ps(u, _mm512_maskz_loadu_ps(mt, r + 16 * nf), c[nf]);
        }
    }
    if (k < n) {
        const float *p = xt + off[k];
        const __m512 v = _mm512_set1_ps(vals[k]);
        for (int q = 0; q < nf; q++)
            a[q] = _mm512_fmadd_ps(v, _mm512_loadu_ps(p + 16 * q), a[q]);
        if (mk)
            a[nf] = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(mt, p + 16 * nf), a[nf]);
    }
    for (int q = 0; q < nf; q++)
        _mm512_storeu_ps(yt + 16 * q, _mm512_add_ps(a[q], c[q]));
    if (mk)
        _mm512_mask_storeu_ps(yt + 16 * nf, mt, _mm512_add_ps(a[nf], c[nf]));
}

/* y[0..len) += sum_k vals[k] * x[off[k] + 0..len) for one output channel and image:
 * blocks of 64 output floats in 8 accumulators (even and odd operands) with plain loads
 * (masked loads cost about a third more per block on the Xeon measured), then the tail
 * (conv_tail_512: masked loads never touch memory past the window) */
DNK_T512 static void conv_run_512(const uint64_t *restrict off, const float *restrict vals,
                                  uint64_t n, const float *restrict xb, float *restrict yb,
                                  uint64_t len) {
    uint64_t t = 0;
    for (; t + 64 <= len; t += 64) {
        __m512 a0 = _mm512_loadu_ps(yb + t), a1 = _mm512_loadu_ps(yb + t + 16);
        __m512 a2 = _mm512_loadu_ps(yb + t + 32), a3 = _mm512_loadu_ps(yb + t + 48);
        __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
        uint64_t k = 0;
        for (; k + 2 <= n; k += 2) {
            const float *p = xb + off[k] + t, *q = xb + off[k + 1] + t;
            const __m512 v = _mm512_set1_ps(vals[k]), u = _mm512_set1_ps(vals[k + 1]);
            a0 = _mm512_fmadd_ps(v, _mm512_loadu_ps(p), a0);
            a1 = _mm512_fmadd_ps(v, _mm512_loadu_ps(p + 16), a1);
            a2 = _mm512_fmadd_ps(v, _mm512_loadu_ps(p + 32), a2);
            a3 = _mm512_fmadd_ps(v, _mm512_loadu_ps(p + 48), a3);
            c0 = _mm512_fmadd_ps(u, _mm512_loadu_ps(q), c0);
            c1 = _mm512_fmadd_ps(u, _mm512_loadu_ps(q + 16), c1);
            c2 = _mm512_fmadd_ps(u, _mm512_loadu_ps(q + 32), c2);
            c3 = _mm512_fmadd_ps(u, _mm512_loadu_ps(q + 48), c3);
        }
        if (k < n) {
            const float *p = xb + off[k] + t;
            const __m512 v = _mm512_set1_ps(vals[k]);
            a0 = _mm512_fmadd_ps(v, _mm512_loadu_ps(p), a0);
            a1 = _mm512_fmadd_ps(v, _mm512_loadu_ps(p + 16), a1);
            a2 = _mm512_fmadd_ps(v, _mm512_loadu_ps(p + 32), a2);
            a3 = _mm512_fmadd_ps(v, _mm512_loadu_ps(p + 48), a3);
        }
        _mm512_storeu_ps(yb + t, _mm512_add_ps(a0, c0));
        _mm512_storeu_ps(yb + t + 16, _mm512_add_ps(a1, c1));
        _mm512_storeu_ps(yb + t + 32, _mm512_add_ps(a2, c2));
        _mm512_storeu_ps(yb + t + 48, _mm512_add_ps(a3, c3));
    }
    if (t == len)
        return;
    /* the tail, under 64 floats: nf whole vectors and, if rem, a masked one */
    const uint64_t nf = (len - t) / 16, rem = (len - t) % 16;
    const __mmask16 mt = (__mmask16)((1u << rem) - 1);
    switch (nf * 2 + (rem != 0)) {
    case 1: conv_tail_512(off, vals, n, xb + t, yb + t, 0, 1, mt); break;
    case 2: conv_tail_512(off, vals, n, xb + t, yb + t, 1, 0, mt); break;
    case 3: conv_tail_512(off, vals, n, xb + t, yb + t, 1, 1, mt); break;
    case 4: conv_tail_512(off, vals, n, xb + t, yb + t, 2, 0, mt); break;
    case 5: conv_tail_512(off, vals, n, xb + t, yb + t, 2, 1, mt); break;
    case 6: conv_tail_512(off, vals, n, xb + t, yb + t, 3, 0, mt); break;
    default: conv_tail_512(off, vals, n, xb + t, yb + t, 3, 1, mt); break;
    }
}

/* conv_pack's row (dnk_row_fn): masked loads read only columns [c0, c1) of s */
DNK_T512 static void pack_row_512(float *d, const float *s, int64_t c0, int64_t c1, uint64_t wq) {
    for (uint64_t c = 0; c < wq; c += 16) {
        const int64_t lo = c0 - (int64_t)c, hi = c1 - (int64_t)c;
        const uint32_t l = lo <= 0 ? 0 : lo >= 16 ? 16 : (uint32_t)lo;
        const uint32_t h = hi <= 0 ? 0 : hi >= 16 ? 16 : (uint32_t)hi;
        const __mmask16 m = h > l ? (__mmask16)(((1u << h) - 1) & ~((1u << l) - 1)) : 0;
        const __m512 v = _mm512_maskz_loadu_ps(m, s + c);
        if (c + 16 <= wq)
            _mm512_storeu_ps(d + c, v);
        else
            _mm512_mask_storeu_ps(d + c, (__mmask16)((1u << (wq - c)) - 1), v);
    }
}

/* the direct convolution's piece (conv_seg in dnk_impl.h) with 16-float vectors */
DNK_T512 static void conv_seg_512(const uint32_t *restrict cols, const float *restrict vals,
                                  uint64_t n, const dnk_cv_t *cv, const float *restrict x,
                                  float *restrict y) {
    uint64_t off[DNK_CAP];
    uint64_t k = 0;
    for (; k + 8 <= n; k += 8)
        _mm512_storeu_si512(off + k, dnk512_conv_off8(cv, _mm256_loadu_si256((const __m256i *)(cols + k))));
    for (; k < n; k++)
        off[k] = dnk_conv_off(cv, cols[k]);
    for (uint64_t b = 0; b < cv->g->batch; b++)
        conv_run_512(off, vals, n, x + b * cv->xstride, y + b * cv->oplane, cv->len);
}

/* Returns DNK_OK, DNK_ECORRUPT (*bad_row set), or 1: not handled here (the caller takes
 * the AVX2 path). kind/gw/vw are compile-time constants after inlining. */
DNK_INLINE DNK_T512 int dnk512_dot_run(const dnk_layer_t *w, const float *restrict x,
                                       uint64_t B, float *restrict y, uint64_t *bad_row,
                                       unsigned gw, int kind, unsigned vw, int rc, unsigned rice,
                                       int mm, const dnk_cv_t *cv) {
    const void *restrict gaps = w->gaps;
    const void *restrict vc = w->vcodes;
    const uint64_t glen = w->gap_len, nnz = w->nnz, nrows = w->nrows, ncols = w->ncols;
    const uint64_t nstep = w->gap_nstep, delim = w->gap_delim;
    const uint64_t nt = kind == DNK_VAL_DICT ? w->vtable_n : w->etable_n;
    /* FLOAT: exponent field per code, already shifted into place; DICT: the values (as
     * bits). Tables of up to 32 codes are looked up in two registers (vpermt2d), larger
     * ones gathered from memory. */
    uint32_t et32[256] = {0};
    if (kind == DNK_VAL_FLOAT) {
        if (nt > 256)
            return 1;
        for (uint64_t c = 0; c < nt; c++)
            et32[c] = (uint32_t)w->etable[c] << 23;
    } else if (kind == DNK_VAL_DICT && nt <= 32) {
        memcpy(et32, w->vtable, nt * 4);
    }
    /* the distance steps of codes < 128 in registers; longer codes are gathered */
    uint32_t st32[128] = {0};
    memcpy(st32, w->gap_step, (nstep < 128 ? nstep : 128) * 4);
    __m512i tst[8];
    for (int k = 0; k < 8; k++)
        tst[k] = _mm512_loadu_si512(st32 + 16 * k);
    const __m512i v127 = _mm512_set1_epi32(127);
    const int small = kind != DNK_VAL_F32 && nt <= 32;
    const __m512i t_lo = _mm512_loadu_si512(et32), t_hi = _mm512_loadu_si512(et32 + 16);
    const uint8_t *restrict p0 = w->planes;
    const float *restrict vals = w->vals, *restrict tab = w->vtable;
    const __m512i vdel = _mm512_set1_epi32((int)delim), vnstep = _mm512_set1_epi32((int)nstep);
    const __m512i vncols = _mm512_set1_epi32((int)ncols), one = _mm512_set1_epi32(1);
    const __m512i vlast = _mm512_set1_epi32((int)ncols - 1), vnt = _mm512_set1_epi32((int)nt);
    const __m512i l15 = _mm512_set1_epi32(15), m7f = _mm512_set1_epi32(0x7F);
    /* Rice-coded distances: lane k's extra bits start (k * rice) bits after the step's */
    const uint8_t *restrict extra = w->gap_extra;
    const __m512i lane_r = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32((int)rice));
    const __m512i seven = _mm512_set1_epi32(7);
    const __m512i rmask = _mm512_set1_epi32((int)((1u << rice) - 1));
    /* mm (batch > 1): a row's columns and values, up to DNK_CAP at a time */
    uint32_t cb[DNK_CAP + 16]; /* + 16: steps store all their lanes */
    float vb[DNK_CAP + 16];
    uint64_t cnt = 0;
    /* multiply the buffered operands into row `row` (a matrix product or a convolution) */
#define DNK512_FLUSH()                                                                             \
    do {                                                                                           \
        if (cv)                                                                                    \
            conv_seg_512(cb, vb, cnt, cv, x, y + row * B);                                         \
        else                                                                                       \
            seg_mm_avx2(cb, vb, cnt, x, B, y + row * B);                                           \
        cnt = 0;                                                                                   \
    } while (0)
    uint64_t i = 0, o = 0, row = 0;
    __mmask16 bad = 0;
    while (row < nrows) {
        __m512i carry = _mm512_setzero_si512();
        __m512 acc = _mm512_setzero_ps();
        for (;;) {
            if (mm && cnt > DNK_CAP - 16) { /* a long row: multiply what it has so far */
                DNK512_FLUSH();
            }
            if (DNK_UNLIKELY(i >= glen))
                goto corrupt;
            const uint64_t left = glen - i;
            const __mmask16 lm = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
            const __m512i s = dnk512_ld(gaps, i, gw, lm);
            const __mmask16 dm = _mm512_mask_cmpeq_epi32_mask(lm, s, vdel);
            if (DNK_LIKELY(lm == 0xFFFF && !dm)) { /* 16 operands: the common step */
                if (DNK_UNLIKELY(16 > nnz - o))
                    goto corrupt;
                DNK512_STEP((__mmask16)0xFFFF);
                i += 16; /* a predicted branch, not a data dependence on the load */
                o += 16;
                cnt += 16;
                continue;
            }
            const unsigned n = dm ? (unsigned)__builtin_ctz(dm) : (unsigned)__builtin_popcount(lm);
            if (DNK_UNLIKELY(n > nnz - o))
                goto corrupt;
            if (n) {
                DNK512_STEP((__mmask16)((1u << n) - 1));
                i += n;
                o += n;
                cnt += n;
            }
            if (dm) { /* the row's delimiter, at stream position i */
                if (kind != DNK_VAL_F32 && dnk_ld(vc, i, vw) != w->vdelim)
                    goto corrupt;
                if (bad)
                    goto corrupt;
                if (!mm) {
                    y[row] = _mm512_reduce_add_ps(acc);
                } else if (cnt) {
                    DNK512_FLUSH();
                }
                row++;
                i++;
                break;
            }
        }
    }
    if (i != glen || o != nnz)
        goto corrupt;
    return DNK_OK;
corrupt:
    *bad_row = row;
    return DNK_ECORRUPT;
#undef DNK512_FLUSH
}

/* the AVX-512 sparse product where it applies (whole layer, plain or Rice-coded distance
 * codes, 1/2-byte gap symbols, float32 / dict / float32-three-plane values), else 1.
 * Batch 1: the one-pass dot; batch > 1: each row's columns and values walked into chunk
 * buffers, multiplied by the AVX2 tiles. */
DNK_T512 static int dnk512_sparse(const dnk_layer_t *w, const float *x, uint64_t B, float *y,
                                  uint64_t *bad_row, const dnk_cv_t *cv) {
    const unsigned gw = w->gap_width;
    if (!w->gaps || (gw != 1 && gw != 2) || w->row_begin != 0 ||
        w->row_end != w->nrows || w->op_begin != 0 || w->nnz == 0 || w->gap_nstep == 0 ||
        w->ncols >= (UINT64_C(1) << 27) || w->gap_delim >= (UINT64_C(1) << 16) ||
        w->gap_len != w->nnz + w->nrows)
        return 1;
    for (uint64_t c = 0; c < w->gap_nstep; c++) /* so 16 lanes' sums stay below 2^32 */
        if (w->gap_step[c] > w->ncols)
            return 1;
    /* Rice-coded distances (every code has the same number of extra bits): operand o's
     * are bits [o * rice, (o + 1) * rice) of gap_extra, so their total is known here */
    unsigned rice = 0;
    if (w->gap_xbits) {
        if (dnk_esc_kind(w) != 2 || w->gap_xbits[0] > 24 || w->nnz > (UINT64_C(1) << 58))
            return 1;
        rice = w->gap_xbits[0];
        const uint64_t need = w->nnz * rice;
        if (need > w->gap_extra_bits || w->gap_extra_bits - need >= 8) {
            *bad_row = 0; /* extra bits missing, or left over beyond the byte padding */
            return DNK_ECORRUPT;
        }
    }
    const int kind = w->val_kind;
    const unsigned vw = kind == DNK_VAL_F32 ? 0 : w->vcode_width;
    if (kind == DNK_VAL_FLOAT && !(w->val_fmt == DNK_FMT_F32 && w->nplanes == 3))
        return 1;
    if (kind != DNK_VAL_F32 && (vw != 1 && vw != 2))
        return 1;
    if (kind != DNK_VAL_F32 && w->vdelim >= (UINT64_C(1) << 16))
        return 1;
    if ((kind == DNK_VAL_DICT ? w->vtable_n : w->etable_n) >= (UINT64_C(1) << 31))
        return 1;
#define DNK512(G, K, V)                                                                            \
    (B > 1 || cv ? (rice ? dnk512_dot_run(w, x, B, y, bad_row, G, K, V, 1, rice, 1, cv)           \
                         : dnk512_dot_run(w, x, B, y, bad_row, G, K, V, 0, 0, 1, cv))              \
     : rice      ? dnk512_dot_run(w, x, 1, y, bad_row, G, K, V, 1, rice, 0, NULL)                  \
                 : dnk512_dot_run(w, x, 1, y, bad_row, G, K, V, 0, 0, 0, NULL))
    if (gw == 1) {
        if (kind == DNK_VAL_F32)
            return DNK512(1, DNK_VAL_F32, 0);
        if (kind == DNK_VAL_DICT)
            return vw == 1 ? DNK512(1, DNK_VAL_DICT, 1) : DNK512(1, DNK_VAL_DICT, 2);
        return vw == 1 ? DNK512(1, DNK_VAL_FLOAT, 1) : DNK512(1, DNK_VAL_FLOAT, 2);
    }
    if (kind == DNK_VAL_F32)
        return DNK512(2, DNK_VAL_F32, 0);
    if (kind == DNK_VAL_DICT)
        return vw == 1 ? DNK512(2, DNK_VAL_DICT, 1) : DNK512(2, DNK_VAL_DICT, 2);
    return vw == 1 ? DNK512(2, DNK_VAL_FLOAT, 1) : DNK512(2, DNK_VAL_FLOAT, 2);
#undef DNK512
}
#undef DNK512_STEP
