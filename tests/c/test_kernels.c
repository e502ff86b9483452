/*
 * dnn_adapter's fused kernels (dnn_adapter/csrc/kernels.c) under ASan/UBSan, driven from C:
 * products from gap streams (plain and Rice-coded distances) with float32 and dictionary
 * values, at batch 1 and 3, on every ISA level, against a double-precision reference; then
 * thousands of randomly corrupted streams (symbols, value codes, extra bits), which must
 * give DNK_OK or DNK_ECORRUPT and never an out-of-bounds access (the sanitizers check).
 * The direct convolution (dnk_layer_conv2d) likewise, on exactly-sized heap buffers, with
 * geometries whose shifted-plane reads end at the input's last float.
 * Built and run by tests/test_c_sanitizers.py; prints "ok".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#define NROWS 37
#define NCOLS 300
#define MAXNNZ (NROWS * NCOLS)
#define RICE 3
#define NVALS 5

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint32_t rnd(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Du) >> 32);
}

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                             \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

/* the layer: positions, values, and the streams a wavelet-tree extract would give */
static uint32_t cols[MAXNNZ], rowlen[NROWS];
static float vals[MAXNNZ], vtable[NVALS] = {-1.5f, 0.25f, 3.0f, -0.125f, 7.0f};
static uint8_t vcode_of[MAXNNZ];
static uint16_t gaps[MAXNNZ + NROWS], rgaps[MAXNNZ + NROWS];
static uint8_t vcodes[MAXNNZ + NROWS];
static uint32_t step[NCOLS + 2], rstep[NCOLS + 2];
static uint8_t xbits[NCOLS + 2], extra[MAXNNZ + 16];
static uint64_t nnz, glen, extra_bits, rlen;

static void build(void) {
    nnz = glen = extra_bits = 0;
    memset(extra, 0, sizeof extra);
    for (int r = 0; r < NROWS; r++) {
        int prev = -1, n = 0;
        for (int c = 0; c < NCOLS; c++) {
            if (r == 3 || rnd() % 10) /* an empty row; 10% density */
                continue;
            cols[nnz] = (uint32_t)c;
            vcode_of[nnz] = (uint8_t)(rnd() % NVALS);
            vals[nnz] = vtable[vcode_of[nnz]] * (float)(1 + rnd() % 7);
            /* as the binding lays them out: code = skipped zeros g, step[code] = g + 1;
             * Rice: code = g >> RICE, step = (code << RICE) + 1, + the RICE low bits of g */
            uint32_t g = (uint32_t)(c - prev - 1);
            gaps[glen] = (uint16_t)g;
            rgaps[glen] = (uint16_t)(g >> RICE);
            for (int b = 0; b < RICE; b++, extra_bits++)
                if ((g >> b) & 1u)
                    extra[extra_bits >> 3] |= (uint8_t)(1u << (extra_bits & 7));
            vcodes[glen] = vcode_of[nnz];
            glen++, nnz++, n++;
            prev = c;
        }
        rowlen[r] = (uint32_t)n;
        gaps[glen] = rgaps[glen] = NCOLS + 1; /* the delimiter */
        vcodes[glen] = NVALS;                 /* the value stream's delimiter */
        glen++;
    }
    rlen = glen;
    for (uint32_t c = 0; c <= NCOLS; c++) {
        step[c] = c + 1;
        rstep[c] = (c << RICE) + 1;
        xbits[c] = RICE;
    }
}

static dnk_layer_t layer(int kind, int rice) {
    dnk_layer_t w;
    memset(&w, 0, sizeof w);
    w.nrows = NROWS;
    w.ncols = NCOLS;
    w.nnz = nnz;
    w.row_end = NROWS;
    w.gaps = rice ? rgaps : gaps;
    w.gap_width = 2;
    w.gap_len = glen;
    w.gap_delim = NCOLS + 1;
    w.gap_step = rice ? rstep : step;
    w.gap_nstep = NCOLS + 1;
    if (rice) {
        w.gap_xbits = xbits;
        w.gap_extra = extra;
        w.gap_extra_bits = extra_bits;
        w.gap_extra_bytes = sizeof extra;
    }
    w.val_kind = kind;
    if (kind == DNK_VAL_F32) {
        w.vals = vals;
    } else {
        w.vcodes = vcodes;
        w.vcode_width = 1;
        w.vcode_len = glen;
        w.vdelim = NVALS;
        w.vtable = vtable;
        w.vtable_n = NVALS;
    }
    return w;
}

static void check_product(const dnk_layer_t *w, int kind, uint64_t batch) {
    static float xt[NCOLS * 3], yt[NROWS * 3];
    for (uint64_t i = 0; i < NCOLS * batch; i++)
        xt[i] = (float)((int)(rnd() % 17) - 8) * 0.5f;
    uint64_t bad = 0;
    CHECK(dnk_layer_mm(w, xt, batch, yt, &bad) == DNK_OK);
    uint64_t k = 0;
    for (int r = 0; r < NROWS; r++) {
        for (uint64_t b = 0; b < batch; b++) {
            double ref = 0;
            for (uint32_t j = 0; j < rowlen[r]; j++) {
                double v = kind == DNK_VAL_F32 ? vals[k + j] : vtable[vcode_of[k + j]];
                ref += v * xt[cols[k + j] * batch + b];
            }
            CHECK(fabs(yt[r * batch + b] - ref) <= 1e-3 * (1 + fabs(ref)));
        }
        k += rowlen[r];
    }
}

/* direct conv: the weight's NCOLS columns are (ci, i, j) of a CIN x KH x KW filter */
#define CIN 12
#define KH 5
#define KW 5
static void check_conv(const dnk_layer_t *w, int kind, dnk_conv_t cv) {
    const int64_t hp = (int64_t)(cv.h + 2 * cv.ph), wp = (int64_t)(cv.w + 2 * cv.pw);
    const uint64_t oh = (uint64_t)(hp - (int64_t)(cv.dh * (KH - 1)) - 1) / cv.sh + 1;
    const uint64_t ow = (uint64_t)(wp - (int64_t)(cv.dw * (KW - 1)) - 1) / cv.sw + 1;
    const uint64_t nx = cv.batch * CIN * cv.h * cv.w, ny = NROWS * cv.batch * oh * ow;
    const uint64_t nws = dnk_conv2d_workspace(&cv, NROWS);
    CHECK(nws > 0);
    /* exact sizes: ASan sees any read or write past them */
    float *x = malloc(nx * sizeof *x), *y = malloc(ny * sizeof *y), *ws = malloc(nws * sizeof *ws);
    CHECK(x && y && ws);
    for (uint64_t i = 0; i < nx; i++)
        x[i] = (float)((int)(rnd() % 17) - 8) * 0.25f;
    uint64_t bad = 0;
    /* the CSR form of the same weight, on exactly-sized heap buffers too */
    uint64_t nnz = 0, *rp = malloc((NROWS + 1) * sizeof *rp);
    CHECK(rp);
    rp[0] = 0;
    for (int r = 0; r < NROWS; r++)
        rp[r + 1] = nnz += rowlen[r];
    uint32_t *cc = malloc((nnz ? nnz : 1) * sizeof *cc);
    float *cvals = malloc((nnz ? nnz : 1) * sizeof *cvals), *y2 = malloc(ny * sizeof *y2);
    CHECK(cc && cvals && y2);
    for (uint64_t t = 0; t < nnz; t++) {
        cc[t] = cols[t];
        cvals[t] = kind == DNK_VAL_F32 ? vals[t] : vtable[vcode_of[t]];
    }
    CHECK(dnk_csr_conv2d(NROWS, NCOLS, rp, cc, cvals, nnz, &cv, x, ws, nws, y2) == DNK_OK);
    CHECK(dnk_layer_conv2d(w, &cv, x, ws, nws, y, &bad) == DNK_OK);
    uint64_t k = 0;
    for (int r = 0; r < NROWS; r++) {
        for (uint64_t b = 0; b < cv.batch; b++)
            for (uint64_t oy = 0; oy < oh; oy++)
                for (uint64_t ox = 0; ox < ow; ox++) {
                    double ref = 0;
                    for (uint32_t t = 0; t < rowlen[r]; t++) {
                        uint32_t c = cols[k + t], ci = c / (KH * KW), i = c / KW % KH,
                                 j = c % KW;
                        double v = kind == DNK_VAL_F32 ? vals[k + t] : vtable[vcode_of[k + t]];
                        int64_t yy = (int64_t)(oy * cv.sh + i * cv.dh) - (int64_t)cv.ph;
                        int64_t xx = (int64_t)(ox * cv.sw + j * cv.dw) - (int64_t)cv.pw;
                        if (yy >= 0 && yy < (int64_t)cv.h && xx >= 0 && xx < (int64_t)cv.w)
                            ref += v * x[((b * CIN + ci) * cv.h + (uint64_t)yy) * cv.w +
                                         (uint64_t)xx];
                    }
                    float got = y[((r * cv.batch + b) * oh + oy) * ow + ox];
                    CHECK(fabs(got - ref) <= 1e-3 * (1 + fabs(ref)));
                    got = y2[((r * cv.batch + b) * oh + oy) * ow + ox];
                    CHECK(fabs(got - ref) <= 1e-3 * (1 + fabs(ref)));
                }
        k += rowlen[r];
    }
    CHECK(dnk_layer_conv2d(w, &cv, x, ws, nws - 1, y, &bad) == DNK_EINVAL); /* short ws */
    CHECK(dnk_csr_conv2d(NROWS, NCOLS, rp, cc, cvals, nnz, &cv, x, ws, nws - 1, y2) == DNK_EINVAL);
    rp[NROWS / 2] = nnz + 1; /* a row past the end */
    CHECK(dnk_csr_conv2d(NROWS, NCOLS, rp, cc, cvals, nnz, &cv, x, ws, nws, y2) == DNK_ECORRUPT);
    free(rp);
    free(cc);
    free(cvals);
    free(y2);
    cv.cin = CIN + 1; /* columns do not match the geometry */
    CHECK(dnk_layer_conv2d(w, &cv, x, ws, nws, y, &bad) == DNK_EINVAL);
    cv.cin = CIN, cv.h = cv.dh * (KH - 1) - 2 * cv.ph; /* the kernel does not fit */
    CHECK(dnk_layer_conv2d(w, &cv, x, ws, nws, y, &bad) == DNK_EINVAL);
    CHECK(dnk_conv2d_workspace(&cv, NROWS) == 0);
    free(x);
    free(y);
    free(ws);
}

int main(void) {
    build();
    const int levels = dnk_set_isa_level(99) + 1; /* every level this CPU has */
    for (int lv = 0; lv < levels; lv++) {
        CHECK(dnk_set_isa_level(lv) == lv);
        for (int kind = DNK_VAL_F32; kind <= DNK_VAL_DICT; kind++)
            for (int rice = 0; rice <= 1; rice++)
                for (uint64_t batch = 1; batch <= 3; batch += 2) {
                    dnk_layer_t w = layer(kind, rice);
                    check_product(&w, kind, batch);
                    /* h, w, kh, kw, sh, sw, dh, dw, ph, pw */
                    dnk_conv_t tight = {batch, CIN, KH, KW, KH, KW, 1, 1, 1, 1, 0, 0}; /* 1x1 out */
                    dnk_conv_t wide = {batch, CIN, 8, 11, KH, KW, 1, 1, 1, 2, 0, 0};   /* dilated */
                    dnk_conv_t pad = {batch, CIN, 3, 20, KH, KW, 1, 1, 1, 1, 2, 1};    /* padded */
                    dnk_conv_t strd = {batch, CIN, 9, 13, KH, KW, 2, 3, 1, 1, 1, 2};   /* strided */
                    dnk_conv_t all = {batch, CIN, 14, 9, KH, KW, 3, 2, 2, 1, 3, 0};
                    check_conv(&w, kind, tight);
                    check_conv(&w, kind, wide);
                    check_conv(&w, kind, pad);
                    check_conv(&w, kind, strd);
                    check_conv(&w, kind, all);
                }
    }
    /* corrupted streams: any outcome but a crash or an out-of-bounds access */
    static uint16_t g2[MAXNNZ + NROWS];
    static uint8_t v2[MAXNNZ + NROWS], e2[sizeof extra];
    static float xt[NCOLS * 3], yt[NROWS * 3];
    for (uint64_t i = 0; i < NCOLS * 3; i++)
        xt[i] = 1.0f;
    int corrupt = 0;
    for (int it = 0; it < 6000; it++) {
        int kind = it & 1, rice = (it >> 1) & 1;
        uint64_t batch = (it >> 2) & 1 ? 3 : 1;
        dnk_set_isa_level((int)((it >> 3) % (unsigned)levels));
        dnk_layer_t w = layer(kind, rice);
        memcpy(g2, w.gaps, glen * sizeof g2[0]);
        memcpy(v2, vcodes, glen);
        memcpy(e2, extra, sizeof extra);
        for (int m = 1 + (int)(rnd() % 3); m > 0; m--) {
            uint64_t at = rnd() % glen;
            switch (rnd() % 4) {
            case 0: g2[at] = (uint16_t)(rnd() % (NCOLS + 5)); break; /* any code, or junk */
            case 1: g2[at] = NCOLS + 1; break; /* a delimiter too many or misplaced */
            case 2: v2[at] = (uint8_t)(rnd() % (NVALS + 3)); break;
            default: e2[rnd() % ((extra_bits + 7) / 8 + 1)] = (uint8_t)rnd(); break;
            }
        }
        if (rnd() % 4 == 0)
            w.gap_len = rnd() % (glen + 1); /* a stream cut short */
        w.vcode_len = w.gap_len;
        w.gaps = g2;
        if (kind == DNK_VAL_DICT)
            w.vcodes = v2;
        if (rice)
            w.gap_extra = e2;
        uint64_t bad = 0;
        int st;
        if (it % 5 == 0) { /* the direct conv's walk */
            static float cx[CIN * KH * KW], cy[NROWS * 3], cws[4096];
            dnk_conv_t cv = {1, CIN, KH, KW, KH, KW, 1, 1, 1, 1, 0, 1}; /* 1 x 3 output */
            for (int i = 0; i < CIN * KH * KW; i++)
                cx[i] = 1.0f;
            CHECK(dnk_conv2d_workspace(&cv, NROWS) <= 4096);
            st = dnk_layer_conv2d(&w, &cv, cx, cws, 4096, cy, &bad);
        } else {
            st = dnk_layer_mm(&w, xt, batch, yt, &bad);
        }
        CHECK(st == DNK_OK || st == DNK_ECORRUPT);
        CHECK(st == DNK_OK || bad <= NROWS);
        corrupt += st == DNK_ECORRUPT;
    }
    CHECK(corrupt > 1000); /* most edits are caught (the others give some product) */
    for (int rice = 0; rice <= 1; rice++) { /* a step of 0 (not skipped zeros + 1) */
        dnk_layer_t w = layer(DNK_VAL_F32, rice);
        uint32_t *st = rice ? rstep : step, keep = st[7];
        uint64_t bad = 0;
        st[7] = 0;
        CHECK(dnk_layer_mm(&w, xt, 3, yt, &bad) == DNK_EINVAL);
        st[7] = keep;
    }
    (void)rlen;
    printf("kernels: %d of 6000 corrupted streams rejected\nok\n", corrupt);
    return 0;
}
