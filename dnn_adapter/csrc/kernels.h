/*
 * kernels.h -- public C API of dnn_adapter's fused inference kernels.
 *
 * The product of a compressed weight matrix W (nrows x ncols) with activations,
 * computed straight from the compressed form: no dense W is ever built.
 *
 *   yt[r * batch + b] = sum_c W[r, c] * xt[c * batch + b]
 *
 * (xt is the transposed activation block, ncols x batch, row-major; yt is
 * nrows x batch.) Two weight layouts are read:
 *
 *  - sparse tuple RAS (dnn_adapter SparseCodec): a gap stream -- the operand
 *    symbols of the gap RAS *with their delimiters*, as a wavelet-tree extract
 *    gives them -- where a code c < ngap is "skip step[c] - 1 zeros, then a
 *    non-zero" and the delimiter symbol closes a row (offsets restart per row);
 *  - dense rows (element-wise FloatCodec / DictCodec layers): ncols operands
 *    per row, each followed by the value stream's delimiter.
 *
 * Values come from one of three sources: a decoded float32 array, dictionary
 * codes + a float32 table, or FloatCodec parts (exponent codes + exponent
 * table + sign/mantissa byte planes + bit-packed top bits, rebuilt with integer
 * operations and widened to float32). Arithmetic is float32 (fp16/bf16 weights
 * are widened exactly); the summation order differs from a dense GEMM, so
 * results match a dense product only to rounding.
 *
 * This header is also the cffi cdef source (build_kernels.py strips the
 * preprocessor lines), so it holds plain declarations only.
 *
 * Conventions (as in wavelet_c/wavelet.h): functions return DNK_OK or a
 * negative DNK_E* status; memory is borrowed from the caller; nothing is
 * allocated (scratch lives on the stack, under 64 KiB; the convolution's packed input is a
 * workspace the caller passes in); no printing or abort.
 * Data-dependent indices (codes, column offsets, delimiters, row lengths) are
 * checked in C: corrupt streams give DNK_ECORRUPT, never an out-of-bounds
 * access. Sizes of the borrowed arrays are the caller's contract: the Python
 * binding (dnn_adapter/_kernels_api.py) checks every length, dtype and flag
 * before calling.
 *
 * Thread safety: read-only on every input; each call writes only its yt rows.
 */
#ifndef DNK_KERNELS_H
#define DNK_KERNELS_H

#include <stdint.h>

#define DNK_OK 0
#define DNK_EINVAL -1
#define DNK_ECORRUPT -4

/* value sources */
#define DNK_VAL_F32 0
#define DNK_VAL_DICT 1
#define DNK_VAL_FLOAT 2

/* value formats (DNK_VAL_FLOAT) */
#define DNK_FMT_F32 0
#define DNK_FMT_BF16 1
#define DNK_FMT_F16 2

typedef struct {
    uint64_t nrows;     /* rows of W (output features / filters) */
    uint64_t ncols;     /* columns of W (input features, Cin*kh*kw); < 2^32 */
    uint64_t nnz;       /* operands in the whole layer (nrows * ncols when dense) */
    uint64_t row_begin; /* rows [row_begin, row_end) are computed by this call; */
    uint64_t row_end;   /* the streams below start at row_begin's first symbol */
    uint64_t op_begin;  /* index of row_begin's first operand in the layer */

    /* sparse positions; gaps == NULL means dense rows */
    const void *gaps;         /* gap stream, gap_width bytes per symbol */
    uint32_t gap_width;       /* 1, 2 or 4 */
    uint64_t gap_len;         /* symbols in the gap stream */
    uint64_t gap_delim;       /* the delimiter symbol */
    const uint32_t *gap_step; /* step[code] = gap + 1 (escaped codes: the escape's base) */
    uint64_t gap_nstep;       /* codes (< gap_delim) */
    const uint8_t *gap_xbits; /* NULL, or extra bits per code (escaped long distances) */
    const uint8_t *gap_extra; /* the extra bits, LSB-first packed in operand order */
    uint64_t gap_extra_bits;  /* bits of data in gap_extra */
    uint64_t gap_extra_bytes; /* readable bytes: >= gap_extra_bits / 8 + 8 (zero padding) */

    /* values */
    int32_t val_kind;         /* DNK_VAL_* */
    int32_t val_fmt;          /* DNK_FMT_* (DNK_VAL_FLOAT) */
    const float *vals;        /* DNK_VAL_F32: nnz floats (layer-global operand index) */
    const void *vcodes;       /* DICT/FLOAT: code stream aligned with the positions */
    uint32_t vcode_width;     /* 1 or 2 */
    uint64_t vcode_len;       /* symbols in the value code stream */
    uint64_t vdelim;          /* its delimiter symbol */
    const float *vtable;      /* DICT: value per code */
    uint64_t vtable_n;
    const uint16_t *etable;   /* FLOAT: coded field (exponent + top mantissa bits) per code */
    uint64_t etable_n;
    uint32_t field_bits;      /* FLOAT: width of the coded field */
    uint32_t mant_bits;       /* FLOAT: raw mantissa bits; 1 + field + mant = 32 or 16 */
    const uint8_t *planes;    /* FLOAT: nplanes x nnz bytes of (sign << mant | mantissa) */
    uint32_t nplanes;         /* (mant_bits + 1) / 8 */
    const uint8_t *top;       /* FLOAT: the other (mant_bits + 1) % 8 bits, LSB-first packed */
    uint64_t top_bytes;
} dnk_layer_t;

/* yt rows [row_begin, row_end) = W[rows] @ xt. xt: ncols x batch floats, yt:
 * nrows x batch floats (other rows untouched). On DNK_ECORRUPT, *bad_row is
 * the row where the streams went wrong (yt rows are then unspecified). */
int dnk_layer_mm(const dnk_layer_t *w, const float *xt, uint64_t batch, float *yt,
                 uint64_t *bad_row);

/* Geometry of a direct 2-D convolution, groups 1, zero padding: x is batch x cin x h x w
 * floats (not padded), the weight's columns are (ci, i, j) = ci * kh * kw + i * kw + j
 * (ncols = cin * kh * kw, kh * kw <= DNK_CONV_MAXTAP), strides sh, sw, dilations dh, dw,
 * padding ph, pw; oh = (h + 2 ph - dh (kh - 1) - 1) / sh + 1 >= 1, ow likewise. */
typedef struct {
    uint64_t batch, cin, h, w;
    uint64_t kh, kw, sh, sw, dh, dw, ph, pw;
} dnk_conv_t;

#define DNK_CONV_MAXTAP 1024

/* Floats of workspace dnk_layer_conv2d needs for this geometry and nrows output channels
 * (the packed input and, where the output rows are padded for alignment, the wide output;
 * 16 floats of alignment slack included); 0 for a geometry it refuses. */
uint64_t dnk_conv2d_workspace(const dnk_conv_t *cv, uint64_t nrows);

/* Sparse layers only (gaps != NULL, whole layer): y (nrows x batch x oh x ow floats) = the
 * convolution of x with W, computed straight from the streams, no im2col: the input is
 * packed once into ws (ws_len >= dnk_conv2d_workspace floats) as, per channel, one
 * zero-padded plane per row phase (i * dh mod sh) and filter column j, holding the strided
 * columns j * dw + sw * 0..; then each non-zero adds its weight times one contiguous
 * window of its plane to its output channel. Same checks and statuses as dnk_layer_mm;
 * the geometry is checked (DNK_EINVAL). */
int dnk_layer_conv2d(const dnk_layer_t *w, const dnk_conv_t *cv, const float *x, float *ws,
                     uint64_t ws_len, float *y, uint64_t *bad_row);

/* The direct convolution (as dnk_layer_conv2d) with the CSR form of dnk_csr_mm: row r's
 * non-zeros are cols/vals[row_ptr[r] .. row_ptr[r+1]) (row_ptr checked, cols < ncols the
 * caller's contract, as there). */
int dnk_csr_conv2d(uint64_t nrows, uint64_t ncols, const uint64_t *row_ptr, const uint32_t *cols,
                   const float *vals, uint64_t nnz, const dnk_conv_t *cv, const float *x,
                   float *ws, uint64_t ws_len, float *y);

/* CSR product (the cached O(nnz) sparse form): row r's non-zeros are
 * cols/vals[row_ptr[r] .. row_ptr[r+1]). row_ptr is checked (monotone, ends at
 * nnz); cols must be < ncols (the binding checks them once, when the cached
 * form is built, and keeps the arrays read-only). */
int dnk_csr_mm(uint64_t nrows, uint64_t ncols, const uint64_t *row_ptr, const uint32_t *cols,
               const float *vals, uint64_t nnz, const float *xt, uint64_t batch, float *yt);

/* Kernel variant in use: 0 portable, 1 AVX2+FMA, 2 AVX-512 (F/BW/VL/DQ) for the sparse
 * walks and the direct convolution's multiply-adds, AVX2+FMA for the rest (x86-64). */
int dnk_isa_level(void);
/* Force a level (tests): returns the level actually set (capped by the CPU). */
int dnk_set_isa_level(int level);

#endif
