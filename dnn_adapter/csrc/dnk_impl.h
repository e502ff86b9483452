/*
 * dnk_impl.h -- the kernels' bodies, included twice by kernels.c: once
 * portable (DNK_SFX(x) = x##_portable, empty DNK_TARGET) and, on x86-64, once
 * for AVX2+FMA (x##_avx2). The always-inline helpers take on the target of the
 * function they are inlined into. Arguments were validated by kernels.c.
 */

/* ---- multiply: y[0..B) += sum_k vals[k] * xt[col_k * B + 0..B) -------------------------
 * col_k = cols[k], or k when cols is NULL (dense rows). Batch tiles of 32 and 8 columns keep
 * their accumulators in vector registers (GCC vector extensions: 2 SSE registers per
 * 8 floats in the portable build, one AVX register in the AVX2 build); the remainder
 * (< 8 columns) is scalar. */
DNK_INLINE void DNK_SFX(tiles)(const uint32_t *restrict cols, const float *restrict vals,
                               uint64_t n, const float *restrict xt, uint64_t B,
                               float *restrict y) {
    uint64_t t = 0;
    for (; t + 32 <= B; t += 32) {
        dnk_v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, u;
        for (uint64_t k = 0; k < n; k++) {
            const float v = vals[k];
            const float *restrict xr = xt + (cols ? (uint64_t)cols[k] : k) * B + t;
            DNK_LD8(u, xr);
            a0 += v * u;
            DNK_LD8(u, xr + 8);
            a1 += v * u;
            DNK_LD8(u, xr + 16);
            a2 += v * u;
            DNK_LD8(u, xr + 24);
            a3 += v * u;
        }
        DNK_LD8(u, y + t);
        u += a0;
        DNK_ST8(y + t, u);
        DNK_LD8(u, y + t + 8);
        u += a1;
        DNK_ST8(y + t + 8, u);
        DNK_LD8(u, y + t + 16);
        u += a2;
        DNK_ST8(y + t + 16, u);
        DNK_LD8(u, y + t + 24);
        u += a3;
        DNK_ST8(y + t + 24, u);
    }
    for (; t + 8 <= B; t += 8) { /* four chains: one would wait on the FMA latency */
        dnk_v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, u;
        uint64_t k = 0;
#define DNK_XR(k) (xt + (cols ? (uint64_t)cols[k] : (k)) * B + t)
        for (; k + 4 <= n; k += 4) {
            DNK_LD8(u, DNK_XR(k));
            a0 += vals[k] * u;
            DNK_LD8(u, DNK_XR(k + 1));
            a1 += vals[k + 1] * u;
            DNK_LD8(u, DNK_XR(k + 2));
            a2 += vals[k + 2] * u;
            DNK_LD8(u, DNK_XR(k + 3));
            a3 += vals[k + 3] * u;
        }
        for (; k < n; k++) {
            DNK_LD8(u, DNK_XR(k));
            a0 += vals[k] * u;
        }
#undef DNK_XR
        DNK_LD8(u, y + t);
        u += (a0 + a1) + (a2 + a3);
        DNK_ST8(y + t, u);
    }
    if (t < B) {
        float acc[8] = {0};
        const uint64_t tb = B - t;
        for (uint64_t k = 0; k < n; k++) {
            const float v = vals[k];
            const float *restrict xr = xt + (cols ? (uint64_t)cols[k] : k) * B + t;
            for (uint64_t u = 0; u < tb; u++)
                acc[u] += v * xr[u];
        }
        for (uint64_t u = 0; u < tb; u++)
            y[t + u] += acc[u];
    }
}

DNK_TARGET static void DNK_SFX(seg_mm)(const uint32_t *restrict cols, const float *restrict vals,
                                       uint64_t n, const float *restrict xt, uint64_t B,
                                       float *restrict y) {
    if (B == 1) {
        y[0] += dnk_gather_dot(cols, vals, n, xt);
        return;
    }
    DNK_SFX(tiles)(cols, vals, n, xt, B, y);
}

/* dense piece: y[0..B) += sum_k vals[k] * xt[k * B + 0..B) */
DNK_TARGET static void DNK_SFX(dense_mm)(const float *restrict vals, uint64_t n,
                                         const float *restrict xt, uint64_t B,
                                         float *restrict y) {
    if (B == 1) {
        dnk_v8 a0 = {0}, a1 = {0}, u, w;
        uint64_t k = 0;
        for (; k + 16 <= n; k += 16) {
            DNK_LD8(u, vals + k);
            DNK_LD8(w, xt + k);
            a0 += u * w;
            DNK_LD8(u, vals + k + 8);
            DNK_LD8(w, xt + k + 8);
            a1 += u * w;
        }
        a0 += a1;
        float s = 0;
        for (; k < n; k++)
            s += vals[k] * xt[k];
        for (unsigned i = 0; i < 8; i++)
            s += a0[i];
        y[0] += s;
        return;
    }
    DNK_SFX(tiles)(NULL, vals, n, xt, B, y);
}

/* ---- values: n operands starting at layer operand op0; the code of operand k is vcb[k]
 * (copied by the sparse walk), or at stream position s0 + k when vcb is NULL. Returns
 * non-zero on a bad code (the value read is then table[0], never out of bounds).
 * DNK_VAL_F32 values are read in place, never here. Kept out of line so that its loops get
 * the registers to themselves. */
__attribute__((noinline)) DNK_TARGET static unsigned DNK_SFX(decode_vals)(
    const dnk_layer_t *w, uint64_t op0, const uint16_t *restrict vcb, uint64_t s0, uint64_t n,
    float *restrict out) {
    unsigned bad = 0;
    const unsigned vw = w->vcode_width;
    const void *vc = w->vcodes;
    uint16_t tmp[DNK_CAP];
    if (!vcb) { /* dense rows: codes are consecutive in the stream */
        if (vw == 1) {
            const uint8_t *restrict c8 = (const uint8_t *)vc + s0;
            for (uint64_t k = 0; k < n; k++)
                tmp[k] = c8[k];
        } else {
            memcpy(tmp, (const uint16_t *)vc + s0, n * 2);
        }
        vcb = tmp;
    }
    if (w->val_kind == DNK_VAL_DICT) {
        const uint64_t nt = w->vtable_n;
        const float *restrict tab = w->vtable;
        for (uint64_t k = 0; k < n; k++) {
            uint32_t c = vcb[k];
            bad |= (unsigned)(c >= nt);
            out[k] = tab[c < nt ? c : 0];
        }
        return bad;
    }
    /* DNK_VAL_FLOAT: word = sign << (W-1) | field << mb | mantissa (integer ops) */
    const uint64_t nt = w->etable_n, nnz = w->nnz;
    const uint16_t *restrict et = w->etable;
    const uint8_t *restrict p0 = w->planes + op0;
    const unsigned mb = w->mant_bits, np = w->nplanes, rem = mb + 1 - 8 * np;
    if (w->val_fmt == DNK_FMT_F32 && np == 3) { /* fast path: no top bits */
        const uint8_t *restrict p1 = p0 + nnz, *restrict p2 = p0 + 2 * nnz;
        for (uint64_t k = 0; k < n; k++) {
            uint32_t c = vcb[k];
            bad |= (unsigned)(c >= nt);
            uint32_t b2 = p2[k];
            uint32_t word = (uint32_t)p0[k] | (uint32_t)p1[k] << 8 | (b2 & 0x7Fu) << 16 |
                            (b2 >> 7) << 31 | (uint32_t)et[c < nt ? c : 0] << 23;
            memcpy(out + k, &word, 4);
        }
        return bad;
    }
    /* any other layout: the raw sign/mantissa bits in passes over the chunk (planes, then the
     * packed top bits), then the words; each pass has loop-invariant branches only */
    uint32_t raw[DNK_CAP];
    const uint8_t *restrict p1 = p0 + nnz, *restrict p2 = p0 + 2 * nnz;
    switch (np) {
    case 0:
        memset(raw, 0, n * sizeof raw[0]);
        break;
    case 1:
        for (uint64_t k = 0; k < n; k++)
            raw[k] = p0[k];
        break;
    case 2:
        for (uint64_t k = 0; k < n; k++)
            raw[k] = (uint32_t)p0[k] | (uint32_t)p1[k] << 8;
        break;
    default:
        for (uint64_t k = 0; k < n; k++)
            raw[k] = (uint32_t)p0[k] | (uint32_t)p1[k] << 8 | (uint32_t)p2[k] << 16;
        break;
    }
    if (rem) {
        const unsigned sh = 8 * np;
        uint64_t bp = op0 * rem;
        for (uint64_t k = 0; k < n; k++, bp += rem)
            raw[k] |= dnk_top(w->top, w->top_bytes, bp, rem) << sh;
    }
    const int fmt = w->val_fmt;
    for (uint64_t k = 0; k < n; k++) {
        uint32_t c = vcb[k];
        bad |= (unsigned)(c >= nt);
        out[k] = dnk_fval(raw[k], et[c < nt ? c : 0], mb, fmt);
    }
    return bad;
}

/* ---- direct convolution piece: y (one output channel, batch x oh rows of wq floats) +=
 * sum_k vals[k] * the input window of operand k (column cols[k] = (ci, i, j) of the filter),
 * read in place from the packed input (dnk_cv_t: the window is one contiguous run of
 * oh * wq floats of the plane of tap (i, j)). Register-blocked: a block of 32 output floats
 * stays in 8 accumulators (even and odd operands) while every operand of the segment is
 * added, so y is read and written once per segment, and each operand costs a load and an
 * FMA per 8 floats. -------------------------------------------------------------------------- */
DNK_TARGET static void DNK_SFX(conv_seg)(const uint32_t *restrict cols,
                                         const float *restrict vals, uint64_t n,
                                         const dnk_cv_t *cv, const float *restrict x,
                                         float *restrict y) {
    uint64_t off[DNK_CAP];
    for (uint64_t k = 0; k < n; k++)
        off[k] = dnk_conv_off(cv, cols[k]);
    const uint64_t len = cv->len;
    for (uint64_t b = 0; b < cv->g->batch; b++) {
        const float *restrict xb = x + b * cv->xstride;
        float *restrict yb = y + b * cv->oplane;
        uint64_t t = 0;
        for (; t + 32 <= len; t += 32) {
            dnk_v8 a0, a1, a2, a3, c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0}, u;
            DNK_LD8(a0, yb + t);
            DNK_LD8(a1, yb + t + 8);
            DNK_LD8(a2, yb + t + 16);
            DNK_LD8(a3, yb + t + 24);
            uint64_t k = 0;
            for (; k + 2 <= n; k += 2) {
                const float *p = xb + off[k] + t, *q = xb + off[k + 1] + t;
                const float v = vals[k], vq = vals[k + 1];
                DNK_LD8(u, p);
                a0 += v * u;
                DNK_LD8(u, p + 8);
                a1 += v * u;
                DNK_LD8(u, p + 16);
                a2 += v * u;
                DNK_LD8(u, p + 24);
                a3 += v * u;
                DNK_LD8(u, q);
                c0 += vq * u;
                DNK_LD8(u, q + 8);
                c1 += vq * u;
                DNK_LD8(u, q + 16);
                c2 += vq * u;
                DNK_LD8(u, q + 24);
                c3 += vq * u;
            }
            if (k < n) {
                const float *p = xb + off[k] + t;
                const float v = vals[k];
                DNK_LD8(u, p);
                a0 += v * u;
                DNK_LD8(u, p + 8);
                a1 += v * u;
                DNK_LD8(u, p + 16);
                a2 += v * u;
                DNK_LD8(u, p + 24);
                a3 += v * u;
            }
            a0 += c0, a1 += c1, a2 += c2, a3 += c3;
            DNK_ST8(yb + t, a0);
            DNK_ST8(yb + t + 8, a1);
            DNK_ST8(yb + t + 16, a2);
            DNK_ST8(yb + t + 24, a3);
        }
        for (; t + 8 <= len; t += 8) {
            dnk_v8 a0, c0 = {0}, u;
            DNK_LD8(a0, yb + t);
            uint64_t k = 0;
            for (; k + 2 <= n; k += 2) {
                DNK_LD8(u, xb + off[k] + t);
                a0 += vals[k] * u;
                DNK_LD8(u, xb + off[k + 1] + t);
                c0 += vals[k + 1] * u;
            }
            if (k < n) {
                DNK_LD8(u, xb + off[k] + t);
                a0 += vals[k] * u;
            }
            a0 += c0;
            DNK_ST8(yb + t, a0);
        }
        for (; t < len; t++) {
            float a = yb[t];
            for (uint64_t k = 0; k < n; k++)
                a += vals[k] * xb[off[k] + t];
            yb[t] = a;
        }
    }
}

/* ---- sparse rows from a gap stream ----------------------------------------------------------- */
typedef struct {
    uint64_t i, row, pos; /* stream position, current row, running column offset */
    uint64_t xcur;        /* next unread extra bit (escaped distances) */
    uint32_t cnt, nseg;   /* operands and row segments in the chunk */
    unsigned bad;
} DNK_SFX(walk_t);

/* pass 1: gap codes -> column offsets for up to DNK_CAP operands. Returns 0 or
 * DNK_ECORRUPT for a symbol that is neither a code nor the delimiter, a stream that ends
 * before the last row, or value blocks misaligned with the gap blocks. */
DNK_INLINE int DNK_SFX(walk)(const void *restrict gaps, const uint32_t *restrict step,
                             uint64_t nstep, uint64_t delim, uint64_t glen, uint64_t ncols,
                             uint64_t row_end, const void *restrict vc, uint64_t vdelim,
                             DNK_SFX(walk_t) *st, uint32_t *restrict cols,
                             uint16_t *restrict vcb, uint64_t *restrict segrow,
                             uint32_t *restrict segend, const uint8_t *restrict xb,
                             const uint8_t *restrict extra, uint64_t xtotal, uint64_t xmaxb,
                             unsigned gw,
                             unsigned vw, int esc) {
    uint64_t i = st->i, row = st->row, pos = st->pos, xcur = st->xcur;
    uint32_t cnt = 0, nseg = 0, segstart = 0;
    unsigned bad = 0;
    int rc = 0;
    while (cnt < DNK_CAP) {
        if (DNK_UNLIKELY(i >= glen)) {
            rc = DNK_ECORRUPT;
            break;
        }
        uint32_t s = dnk_ld(gaps, i, gw);
        if (DNK_LIKELY(s < nstep)) {
            uint64_t d = step[s];
            if (esc) { /* branchless: nb = 0 for a plain code; the load is clamped in bounds */
                unsigned nb = xb[s];
                uint64_t byte = xcur >> 3, word;
                byte = byte < xmaxb ? byte : xmaxb;
                memcpy(&word, extra + byte, 8);
                d += (word >> (xcur & 7)) & ((UINT64_C(1) << nb) - 1);
                xcur += nb;
                bad |= (unsigned)(xcur > xtotal);
            }
            pos += d; /* d >= 1: every step is (checked on entry) */
            bad |= (unsigned)(pos > ncols);
            cols[cnt] = (uint32_t)(pos - 1);
            if (vw)
                vcb[cnt] = (uint16_t)dnk_ld(vc, i, vw);
            cnt++;
            i++;
        } else if (s == delim) {
            if (vw && dnk_ld(vc, i, vw) != vdelim) {
                rc = DNK_ECORRUPT;
                break;
            }
            if (cnt > segstart) {
                segrow[nseg] = row;
                segend[nseg++] = cnt;
            }
            segstart = cnt;
            row++;
            pos = 0;
            i++;
            if (row == row_end)
                break;
        } else {
            rc = DNK_ECORRUPT;
            break;
        }
    }
    if (cnt > segstart) { /* a row continues in the next chunk */
        segrow[nseg] = row;
        segend[nseg++] = cnt;
    }
    st->i = i;
    st->row = row;
    st->pos = pos;
    st->xcur = xcur;
    st->cnt = cnt;
    st->nseg = nseg;
    st->bad = bad;
    return rc;
}

/* cv != NULL: a direct convolution (xt is the input, batch x cin x h x w; yt rows are B =
 * batch * oh * ow long) */
DNK_INLINE int DNK_SFX(sparse_run)(const dnk_layer_t *w, const float *xt, uint64_t B, float *yt,
                                   uint64_t *bad_row, unsigned gw, unsigned vw, int esc,
                                   const dnk_cv_t *cv) {
    uint32_t cols[DNK_CAP];
    float vals[DNK_CAP];
    uint16_t vcb[DNK_CAP];
    uint64_t segrow[DNK_CAP + 1];
    uint32_t segend[DNK_CAP + 1];
    DNK_SFX(walk_t) st = {0, w->row_begin, 0, 0, 0, 0, 0};
    uint64_t op = w->op_begin;
    while (st.row < w->row_end) {
        if (DNK_SFX(walk)(w->gaps, w->gap_step, w->gap_nstep, w->gap_delim, w->gap_len, w->ncols,
                          w->row_end, w->vcodes, w->vdelim, &st, cols, vcb, segrow, segend,
                          w->gap_xbits, w->gap_extra, w->gap_extra_bits,
                          w->gap_xbits ? w->gap_extra_bytes - 8 : 0, gw, vw, esc))
            goto corrupt;
        const uint32_t cnt = st.cnt;
        if (st.bad || cnt > w->nnz - op)
            goto corrupt;
        const float *v = vals;
        if (!vw)
            v = w->vals + op;
        else if (DNK_SFX(decode_vals)(w, op, vcb, 0, cnt, vals))
            goto corrupt;
        uint32_t a = 0;
        for (uint32_t g = 0; g < st.nseg; g++) {
            if (cv)
                cv->seg(cols + a, v + a, segend[g] - a, cv, xt, yt + segrow[g] * B);
            else
                DNK_SFX(seg_mm)(cols + a, v + a, segend[g] - a, xt, B, yt + segrow[g] * B);
            a = segend[g];
        }
        op += cnt;
    }
    if (st.i != w->gap_len || w->gap_extra_bits - st.xcur >= 8)
        goto corrupt; /* symbols or (beyond the byte padding) extra bits left over */ /* symbols left over after the last row */
    return DNK_OK;
corrupt:
    *bad_row = st.row;
    return DNK_ECORRUPT;
}

/* ---- dense rows ------------------------------------------------------------------------------- */
DNK_TARGET static int DNK_SFX(dense_run)(const dnk_layer_t *w, const float *xt, uint64_t B,
                                         float *yt, uint64_t *bad_row) {
    const int kind = w->val_kind;
    const unsigned vw = w->vcode_width;
    float vals[DNK_CAP];
    const uint64_t ncols = w->ncols;
    for (uint64_t row = w->row_begin; row < w->row_end; row++) {
        uint64_t r = row - w->row_begin;
        uint64_t sb = r * (ncols + 1), ob = w->op_begin + r * ncols;
        float *y = yt + row * B;
        for (uint64_t c0 = 0; c0 < ncols; c0 += DNK_CAP) {
            uint64_t n = ncols - c0 < DNK_CAP ? ncols - c0 : DNK_CAP;
            const float *v = vals;
            if (kind == DNK_VAL_F32)
                v = w->vals + ob + c0;
            else if (DNK_SFX(decode_vals)(w, ob + c0, NULL, sb + c0, n, vals)) {
                *bad_row = row;
                return DNK_ECORRUPT;
            }
            DNK_SFX(dense_mm)(v, n, xt + c0 * B, B, y);
        }
        if (kind != DNK_VAL_F32 && dnk_ld(w->vcodes, sb + ncols, vw) != w->vdelim) {
            *bad_row = row;
            return DNK_ECORRUPT;
        }
    }
    return DNK_OK;
}

/* ---- batch 1, one pass: walk, value, multiply-add per operand, no chunk buffers ----------
 * For the common value sources (float32 array, dict table, float32 FloatCodec parts with
 * whole byte planes). Columns are clamped before the gather (a bad one is flagged and the
 * call fails); two accumulators alternate to halve the FMA latency chain. */
DNK_INLINE int DNK_SFX(sparse_dot_run)(const dnk_layer_t *w, const float *restrict x,
                                       float *restrict y, uint64_t *bad_row, unsigned gw,
                                       int kind, unsigned vw, int esc, int gen) {
    /* few live values in the loop (x86-64 has 16 registers): the operand index is i - row,
     * column and extra-bit overruns are checked once per row / at the end (loads are
     * clamped in bounds meanwhile) */
    const void *restrict gaps = w->gaps;
    const void *restrict vc = w->vcodes;
    const uint32_t *restrict step = w->gap_step;
    const uint8_t *restrict xb = w->gap_xbits, *restrict extra = w->gap_extra;
    const uint64_t nstep = w->gap_nstep, glen = w->gap_len, ncols = w->ncols, nnz = w->nnz;
    const uint64_t xmaxb = esc ? w->gap_extra_bytes - 8 : 0;
    const float *restrict vals = w->vals, *restrict tab = w->vtable;
    const uint16_t *restrict et = w->etable;
    const uint64_t nt = kind == DNK_VAL_DICT ? w->vtable_n : w->etable_n;
    const uint8_t *restrict p0 = w->planes, *restrict top = w->top;
    /* gen: FloatCodec values in any layout (planes, packed top bits, bf16/fp16 words) */
    const unsigned np = w->nplanes, mb = w->mant_bits, rem = mb + 1 - 8 * np;
    const int fmt = w->val_fmt;
    const uint64_t tb = w->top_bytes;
    uint64_t i = 0, row = 0, pos = 0, xcur = 0;
    unsigned bad = 0;
    float a0 = 0, a1 = 0;
    /* esc == 2: Rice coding, every code has the same number of extra bits (checked by the
     * dispatch): no per-code table load on the extra-bit cursor's chain */
    const unsigned rice = esc == 2 && nstep ? xb[0] : 0;
    if (glen != nnz + w->nrows || nnz == 0)
        goto general;
    for (; i < glen; i++) {
        uint32_t s = dnk_ld(gaps, i, gw);
        if (DNK_LIKELY(s < nstep)) {
            uint64_t d = step[s];
            if (esc) {
                unsigned nb = esc == 2 ? rice : xb[s];
                uint64_t byte = xcur >> 3, word;
                byte = byte < xmaxb ? byte : xmaxb;
                memcpy(&word, extra + byte, 8);
                d += (word >> (xcur & 7)) & ((UINT64_C(1) << nb) - 1);
                xcur += nb;
            }
            pos += d;
            uint64_t c = pos - 1;
            c = c < ncols ? c : 0;
            float v;
            if (kind == DNK_VAL_F32) {
                uint64_t o = i - row;
                v = vals[o < nnz ? o : 0];
            } else {
                uint32_t k = dnk_ld(vc, i, vw);
                bad |= (unsigned)(k >= nt);
                k = k < nt ? k : 0;
                if (kind == DNK_VAL_DICT) {
                    v = tab[k];
                } else if (!gen) { /* float32, three whole byte planes */
                    uint64_t o = i - row;
                    o = o < nnz ? o : 0;
                    uint32_t b2 = p0[o + 2 * nnz];
                    uint32_t wd = (uint32_t)p0[o] | (uint32_t)p0[o + nnz] << 8 |
                                  (b2 & 0x7Fu) << 16 | (b2 >> 7) << 31 | (uint32_t)et[k] << 23;
                    memcpy(&v, &wd, 4);
                } else {
                    uint64_t o = i - row;
                    o = o < nnz ? o : 0;
                    uint32_t raw = 0;
                    if (np > 0)
                        raw = p0[o];
                    if (np > 1)
                        raw |= (uint32_t)p0[o + nnz] << 8;
                    if (np > 2)
                        raw |= (uint32_t)p0[o + 2 * nnz] << 16;
                    if (rem)
                        raw |= dnk_top(top, tb, o * rem, rem) << (8 * np);
                    v = dnk_fval(raw, et[k], mb, fmt);
                }
            }
            float t = a0;
            a0 = a1 + v * x[c];
            a1 = t;
        } else if (s == w->gap_delim) {
            if (kind != DNK_VAL_F32 && dnk_ld(vc, i, vw) != w->vdelim)
                goto corrupt;
            if (bad || pos > ncols || row >= w->nrows)
                goto corrupt;
            y[row++] = a0 + a1;
            a0 = a1 = 0;
            pos = 0;
        } else {
            goto corrupt;
        }
    }
    if (bad || row != w->nrows || i - row != nnz ||
        (esc && (xcur > w->gap_extra_bits || w->gap_extra_bits - xcur >= 8)))
        goto corrupt;
    return DNK_OK;
corrupt:
    *bad_row = row;
    return DNK_ECORRUPT;
general:
    return DNK_SFX(sparse_run)(w, x, 1, y, bad_row, gw, kind == DNK_VAL_F32 ? 0 : vw, esc,
                               NULL);
}

/* ---- entry: pick the specialisation (gap width x value-code width) ----------------------- */
DNK_INLINE int DNK_SFX(sparse_dot_dispatch)(const dnk_layer_t *w, const float *x, float *y,
                                            uint64_t *bad_row, unsigned gw, int e) {
#define DNK_DOT(K, V, G)                                                                           \
    (e == 2 ? DNK_SFX(sparse_dot_run)(w, x, y, bad_row, gw, K, V, 2, G)                            \
     : e    ? DNK_SFX(sparse_dot_run)(w, x, y, bad_row, gw, K, V, 1, G)                            \
            : DNK_SFX(sparse_dot_run)(w, x, y, bad_row, gw, K, V, 0, G))
    if (w->val_kind == DNK_VAL_F32)
        return DNK_DOT(DNK_VAL_F32, 1, 0);
    if (w->val_kind == DNK_VAL_DICT)
        return w->vcode_width == 1 ? DNK_DOT(DNK_VAL_DICT, 1, 0) : DNK_DOT(DNK_VAL_DICT, 2, 0);
    if (w->val_fmt == DNK_FMT_F32 && w->nplanes == 3)
        return w->vcode_width == 1 ? DNK_DOT(DNK_VAL_FLOAT, 1, 0) : DNK_DOT(DNK_VAL_FLOAT, 2, 0);
    return w->vcode_width == 1 ? DNK_DOT(DNK_VAL_FLOAT, 1, 1) : DNK_DOT(DNK_VAL_FLOAT, 2, 1);
#undef DNK_DOT
}

/* the sparse walk's specialisation (gap width x value-code width x distance extra bits);
 * cv != NULL: a direct convolution, else a product (at batch 1 over the whole layer: the
 * one-pass dot) */
#define DNK_SPARSE(GW)                                                                             \
    DNK_TARGET static int DNK_SFX(sparse_mm_g##GW)(const dnk_layer_t *w, const float *xt,         \
                                                   uint64_t B, float *yt, uint64_t *bad_row,      \
                                                   const dnk_cv_t *cv) {                          \
        int e = w->gap_xbits != 0;                                                                 \
        unsigned v = w->val_kind == DNK_VAL_F32 ? 0 : w->vcode_width;                              \
        if (!cv && B == 1 && w->row_begin == 0 && w->row_end == w->nrows && w->op_begin == 0)     \
            return DNK_SFX(sparse_dot_dispatch)(w, xt, yt, bad_row, GW, e ? dnk_esc_kind(w) : 0); \
        if (e)                                                                                     \
            return v == 0   ? DNK_SFX(sparse_run)(w, xt, B, yt, bad_row, GW, 0, 1, cv)             \
                   : v == 1 ? DNK_SFX(sparse_run)(w, xt, B, yt, bad_row, GW, 1, 1, cv)             \
                            : DNK_SFX(sparse_run)(w, xt, B, yt, bad_row, GW, 2, 1, cv);            \
        return v == 0   ? DNK_SFX(sparse_run)(w, xt, B, yt, bad_row, GW, 0, 0, cv)                 \
               : v == 1 ? DNK_SFX(sparse_run)(w, xt, B, yt, bad_row, GW, 1, 0, cv)                 \
                        : DNK_SFX(sparse_run)(w, xt, B, yt, bad_row, GW, 2, 0, cv);                \
    }
DNK_SPARSE(1)
DNK_SPARSE(2)
DNK_SPARSE(4)
#undef DNK_SPARSE

DNK_TARGET static int DNK_SFX(sparse_mm)(const dnk_layer_t *w, const float *xt, uint64_t B,
                                         float *yt, uint64_t *bad_row, const dnk_cv_t *cv) {
    if (w->gap_width == 1)
        return DNK_SFX(sparse_mm_g1)(w, xt, B, yt, bad_row, cv);
    if (w->gap_width == 2)
        return DNK_SFX(sparse_mm_g2)(w, xt, B, yt, bad_row, cv);
    return DNK_SFX(sparse_mm_g4)(w, xt, B, yt, bad_row, cv);
}

/* direct sparse convolution: yt rows are B floats apart (cv: one image's band of them) */
DNK_TARGET static int DNK_SFX(layer_conv)(const dnk_layer_t *w, const dnk_cv_t *cv, uint64_t B,
                                          const float *x, float *yt, uint64_t *bad_row) {
    return DNK_SFX(sparse_mm)(w, x, B, yt, bad_row, cv);
}

DNK_TARGET static int DNK_SFX(layer_mm)(const dnk_layer_t *w, const float *xt, uint64_t B,
                                        float *yt, uint64_t *bad_row) {
    if (!w->gaps)
        return DNK_SFX(dense_run)(w, xt, B, yt, bad_row);
    return DNK_SFX(sparse_mm)(w, xt, B, yt, bad_row, NULL);
}

DNK_TARGET static int DNK_SFX(csr_mm)(uint64_t nrows, const uint64_t *row_ptr,
                                      const uint32_t *cols, const float *vals, uint64_t nnz,
                                      const float *xt, uint64_t B, float *yt) {
    for (uint64_t r = 0; r < nrows; r++) {
        uint64_t a = row_ptr[r], b = row_ptr[r + 1];
        if (b < a || b > nnz)
            return DNK_ECORRUPT;
        if (B == 1) {
            yt[r] = dnk_gather_dot(cols + a, vals + a, b - a, xt);
            continue;
        }
        DNK_SFX(seg_mm)(cols + a, vals + a, b - a, xt, B, yt + r * B);
    }
    return DNK_OK;
}
