"""Private binding of the fused kernels (``dnn_adapter._kernels``, C in ``dnn_adapter/csrc``).

Every ``lib.*`` call of the extension lives here. Each call is preceded by the checks of
STYLE.md (ndarray, dtype, C-contiguity, alignment, writability) and by every size and table
check that does not need a pass over the streams; the C side checks the data-dependent
indices (codes, column offsets, delimiters) as it walks them. cffi releases the GIL
around the calls.

Public surface (numpy in, numpy out, no torch): :class:`FusedWeight` (multiply from the
compressed form, decoding on every call), :class:`CSRWeight` (the decoded O(nnz) sparse form,
kept between calls), :func:`layer_mm` / :func:`csr_mm` (the raw kernels), and
:class:`NotFusable`.
"""

from __future__ import annotations

import threading

import numpy as np

from ._kernels import ffi, lib
from .codecs import CodecError, Encoded, _rice_of, get_codec

__all__ = [
    "CSRWeight",
    "FusedWeight",
    "KernelError",
    "NotFusable",
    "csr_mm",
    "isa_level",
    "layer_conv2d",
    "layer_mm",
    "set_isa_level",
]

VAL_F32, VAL_DICT, VAL_FLOAT = lib.DNK_VAL_F32, lib.DNK_VAL_DICT, lib.DNK_VAL_FLOAT
FMT = {"float32": lib.DNK_FMT_F32, "bfloat16": lib.DNK_FMT_BF16, "float16": lib.DNK_FMT_F16}
_WBITS = {lib.DNK_FMT_F32: 32, lib.DNK_FMT_BF16: 16, lib.DNK_FMT_F16: 16}
_MANT_BITS = {"float32": 23, "bfloat16": 7, "float16": 10}
_CHUNK_SYMBOLS = 1 << 18  # dense rows: extract about this many codes per kernel call
_BAND_ELEMS = 1 << 18  # dense rows with a table-driven row decoder: values per band
_EXTRA_PAD = 8  # gap_extra arrays passed to the kernel end with this many zero bytes


class KernelError(ValueError):
    """The compressed streams are corrupt or inconsistent (reported by the C kernel)."""


class NotFusable(ValueError):
    """This encoding has no fused kernel (the caller decodes the dense weight instead)."""


def _check(st: int, op: str, bad_row: int | None = None) -> None:
    if st == lib.DNK_OK:
        return
    if st == lib.DNK_ECORRUPT:
        where = f" (row {bad_row})" if bad_row is not None else ""
        raise KernelError(f"{op}: compressed streams are corrupt or inconsistent{where}")
    if st == lib.DNK_EINVAL:
        raise ValueError(f"{op}: invalid argument")
    raise KernelError(f"{op}: unexpected status {st}")


def _req(a, name: str, dtypes, op: str, *, ndim=None, writable=False) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{op}: {name} must be a numpy array, not {type(a).__name__}")
    if a.dtype not in [np.dtype(d) for d in dtypes]:
        want = [str(np.dtype(d)) for d in dtypes]
        raise TypeError(f"{op}: {name} has dtype {a.dtype}, expected one of {want}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D, got shape {a.shape}")
    if not a.flags.c_contiguous or not a.flags.aligned:
        raise ValueError(f"{op}: {name} must be C-contiguous and aligned")
    if writable and not a.flags.writeable:
        raise ValueError(f"{op}: {name} must be writable")
    return a


def _ptr(a: np.ndarray, ctype: str):
    return ffi.from_buffer(ctype, a, require_writable=False)


def isa_level() -> int:
    """Kernel variant in use: 0 portable, 1 AVX2+FMA."""
    return int(lib.dnk_isa_level())


def set_isa_level(level: int) -> int:
    """Force a kernel variant (tests, benchmarks); -1 restores the best. Returns the level set."""
    return int(lib.dnk_set_isa_level(int(level)))


def _check_xy(xt, yt, nrows: int, ncols: int, op: str):
    _req(xt, "xt", (np.float32,), op, ndim=2)
    if xt.shape[0] != ncols or xt.shape[1] < 1:
        raise ValueError(f"{op}: xt has shape {xt.shape}, expected ({ncols}, batch >= 1)")
    batch = xt.shape[1]
    if yt is None:
        yt = np.empty((nrows, batch), dtype=np.float32)
    _req(yt, "yt", (np.float32,), op, ndim=2, writable=True)
    if yt.shape != (nrows, batch):
        raise ValueError(f"{op}: yt has shape {yt.shape}, expected {(nrows, batch)}")
    if np.may_share_memory(xt, yt):
        raise ValueError(f"{op}: xt and yt overlap")
    return batch, yt


def layer_mm(
    xt,
    *,
    nrows: int,
    ncols: int,
    values: dict,
    gaps=None,
    gap_step=None,
    gap_delim: int = 0,
    gap_xbits=None,
    gap_extra=None,
    rows: tuple[int, int] | None = None,
    yt=None,
):
    """``yt[r] = W[r] @ xt`` for ``r`` in *rows* (default all), W read from its streams.

    Parameters
    ----------
    xt : float32 ndarray (ncols, batch)
        Activations, transposed.
    nrows, ncols : int
        Shape of W.
    values : dict
        ``{"kind": "f32", "vals": float32[nnz]}``, or ``{"kind": "dict", "codes": stream,
        "delim": int, "table": float32[k]}``, or ``{"kind": "float", "fmt": "float32" |
        "bfloat16" | "float16", "codes": stream, "delim": int, "table": uint16[k] (coded
        field per code), "mant_bits": int (raw mantissa bits), "planes": uint8[P, nnz],
        "top": uint8[...] (when ``(mant_bits + 1) % 8``)}``; plus ``"nnz"`` (operands in the
        whole layer; dense: ``nrows * ncols``).
    gaps, gap_step, gap_delim
        Sparse layers: the gap stream (uint8/16/32, delimiters included), ``step[code] =
        gap + 1`` (uint32, each in ``1..ncols``) and the delimiter symbol. ``None``: dense
        rows (the value code stream then holds ``ncols`` codes + a delimiter per row).
    gap_xbits, gap_extra
        Escaped distances: extra bits per code (uint8, <= 32; ``step`` is then the escape's
        base) and the packed extra bits (uint8, read in operand order) followed by 8 zero
        bytes of padding (the kernel reads 8 bytes at a time).
    rows : (r0, r1)
        Dense layers only: compute rows ``r0 .. r1-1``; the value stream starts at row r0.
    yt : float32 ndarray (nrows, batch), optional
        Output (rows outside *rows* are left as they are).
    """
    op = "layer_mm"
    nrows, ncols = int(nrows), int(ncols)
    if nrows < 0 or not 0 < ncols < 1 << 32:
        raise ValueError(f"{op}: bad shape ({nrows}, {ncols})")
    batch, yt = _check_xy(xt, yt, nrows, ncols, op)
    w, keep = _layer(op, nrows, ncols, values, gaps, gap_step, gap_delim, gap_xbits, gap_extra,
                     rows)
    return _mm_walk(op, w, xt, batch, yt)


def _mm_walk(op, w, xt, batch, yt):
    """``dnk_layer_mm`` with checked parts (xt, yt: checked by :func:`_check_xy`)."""
    bad = ffi.new("uint64_t *")
    st = lib.dnk_layer_mm(
        w, _ptr(xt, "float[]"), batch, ffi.from_buffer("float[]", yt, require_writable=True), bad
    )
    _check(st, op, int(bad[0]))
    return yt


def layer_conv2d(
    x,
    *,
    nrows: int,
    kernel_size: tuple[int, int],
    stride=(1, 1),
    padding=(0, 0),
    dilation=(1, 1),
    values: dict,
    gaps,
    gap_step,
    gap_delim: int = 0,
    gap_xbits=None,
    gap_extra=None,
):
    """Direct sparse 2-D convolution (groups 1, zero padding, any stride and dilation) from
    a sparse layer's streams.

    ``x``: float32 ``(batch, cin, h, w)`` C-contiguous; the weight is ``nrows x (cin * kh *
    kw)`` (a conv filter flattened as ``unfold`` orders it, ``kh * kw <= 1024``), read from
    the same streams as :func:`layer_mm`. Returns float32 ``(nrows, batch * oh * ow)``, the
    layout of ``layer_mm`` on the ``unfold``-ed input, computed without building it: the C
    kernel packs the input once (per channel, one zero-padded plane per filter column and
    row phase of the stride), then each non-zero adds its weight times one contiguous window
    of its plane to its output channel. Sums are float32 in the walk's order (equal to a
    dense conv to rounding).
    """
    op = "layer_conv2d"
    x = _req(x, "x", (np.float32,), op, ndim=4)
    cv, need, yshape, ncols = _conv_geometry(
        op, x.shape, int(nrows), kernel_size, stride, padding, dilation
    )
    w, keep = _layer(op, int(nrows), ncols, values, gaps, gap_step, gap_delim, gap_xbits,
                     gap_extra, None)
    return _conv_walk(op, w, cv, x, need, yshape)


def _conv_geometry(op, shape, nrows, kernel_size, stride, padding, dilation):
    """The checked ``dnk_conv_t`` of a convolution of an input of *shape*, its workspace size
    (floats), the output's shape ``(nrows, batch * oh * ow)`` and the weight's columns."""
    B, cin, H, W = (int(v) for v in shape)
    kh, kw = (int(v) for v in kernel_size)
    sh, sw = (int(v) for v in stride)
    ph, pw = (int(v) for v in padding)
    dh, dw = (int(v) for v in dilation)
    if min(kh, kw, sh, sw, dh, dw) < 1 or min(ph, pw) < 0 or kh * kw > lib.DNK_CONV_MAXTAP:
        raise ValueError(
            f"{op}: bad geometry k={kernel_size} s={stride} p={padding} d={dilation}"
        )
    Hp, Wp = H + 2 * ph, W + 2 * pw
    if B < 1 or Hp <= dh * (kh - 1) or Wp <= dw * (kw - 1):
        raise ValueError(f"{op}: input {tuple(shape)} is too small for the kernel")
    oh, ow = (Hp - dh * (kh - 1) - 1) // sh + 1, (Wp - dw * (kw - 1) - 1) // sw + 1
    ncols = cin * kh * kw
    if nrows < 0 or not 0 < ncols < 1 << 32:
        raise ValueError(f"{op}: bad shape ({nrows}, {ncols})")
    cv = ffi.new("dnk_conv_t *")
    cv.batch, cv.cin, cv.h, cv.w = B, cin, H, W
    cv.kh, cv.kw, cv.sh, cv.sw, cv.dh, cv.dw, cv.ph, cv.pw = kh, kw, sh, sw, dh, dw, ph, pw
    need = int(lib.dnk_conv2d_workspace(cv, nrows))
    if need == 0:
        raise ValueError(f"{op}: geometry out of range for input {tuple(shape)}")
    return cv, need, (nrows, B * oh * ow), ncols


def _conv_out(need, yshape):
    """The convolution's workspace (*need* floats, reused) and a new output array."""
    return _WS.get("cx", np.float32, need), np.empty(yshape, dtype=np.float32)


def _conv_walk(op, w, cv, x, need, yshape):
    """``dnk_layer_conv2d`` with checked parts (x: checked float32, C-contiguous)."""
    ws, y = _conv_out(need, yshape)
    bad = ffi.new("uint64_t *")
    st = lib.dnk_layer_conv2d(
        w, cv, _ptr(x, "float[]"), ffi.from_buffer("float[]", ws, require_writable=True),
        need, ffi.from_buffer("float[]", y, require_writable=True), bad,
    )
    _check(st, op, int(bad[0]))
    return y


def _conv_args(cache: dict, op, x, nrows, ncols, kernel_size, stride, padding, dilation):
    """A weight's conv2d arguments checked: ``(x, cv, need, yshape)`` (see
    :func:`_conv_geometry`, memoised in *cache*: a layer sees few input shapes)."""
    x = _req(x, "x", (np.float32,), op, ndim=4)
    key = (x.shape, tuple(kernel_size), tuple(stride), tuple(padding), tuple(dilation))
    g = cache.get(key)
    if g is None:
        g = _conv_geometry(op, x.shape, nrows, kernel_size, stride, padding, dilation)
        if len(cache) >= 16:
            cache.clear()
        cache[key] = g
    cv, need, yshape, kk = g
    if kk != ncols:
        raise ValueError(f"{op}: the weight has {ncols} columns, the input and kernel give "
                         f"cin * kh * kw = {kk}")
    return x, cv, need, yshape


def _addr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _layer(op, nrows, ncols, values, gaps, gap_step, gap_delim, gap_xbits, gap_extra, rows):
    """The checked ``dnk_layer_t`` of a weight's streams, and the cffi buffers it borrows
    (the caller keeps them alive over the C call)."""
    w = ffi.new("dnk_layer_t *")
    keep = []  # cffi buffers must outlive the call
    w.nrows, w.ncols = nrows, ncols
    r0, r1 = (0, nrows) if rows is None else (int(rows[0]), int(rows[1]))
    if not 0 <= r0 <= r1 <= nrows:
        raise ValueError(f"{op}: rows {rows} out of range for {nrows} rows")
    if gaps is not None and (r0, r1) != (0, nrows):
        raise ValueError(f"{op}: sparse layers are computed whole (rows must be all)")
    w.row_begin, w.row_end = r0, r1
    nnz = int(values.get("nnz", -1))
    if nnz < 0:
        raise ValueError(f"{op}: values['nnz'] is required")
    w.nnz = nnz
    if gaps is None:
        if nnz != nrows * ncols:
            raise ValueError(f"{op}: dense layer has nnz={nnz}, expected {nrows * ncols}")
        w.op_begin = r0 * ncols
        stream_len = (r1 - r0) * (ncols + 1)
    else:
        _req(gaps, "gaps", (np.uint8, np.uint16, np.uint32), op, ndim=1)
        _req(gap_step, "gap_step", (np.uint32,), op, ndim=1)
        gap_delim = int(gap_delim)
        if not gap_step.size <= gap_delim < 1 << (8 * gaps.itemsize):
            raise ValueError(
                f"{op}: gap delimiter {gap_delim} must be >= the {gap_step.size} codes"
            )
        if gaps.size != nnz + nrows:
            raise ValueError(
                f"{op}: gap stream has {gaps.size} symbols, expected nnz + nrows = {nnz + nrows}"
            )
        if gap_step.size and (int(gap_step.min()) < 1 or int(gap_step.max()) > ncols):
            raise ValueError(f"{op}: gap steps must lie in 1..{ncols}")
        keep += [_ptr(gaps, "uint8_t[]"), _ptr(gap_step, "uint32_t[]")]
        w.gaps, w.gap_step = keep[-2], keep[-1]
        if gap_xbits is not None:
            _req(gap_xbits, "gap_xbits", (np.uint8,), op, ndim=1)
            _req(gap_extra, "gap_extra", (np.uint8,), op, ndim=1)
            if gap_xbits.size != gap_step.size or (gap_xbits.size and int(gap_xbits.max()) > 32):
                raise ValueError(f"{op}: gap_xbits must give <= 32 bits for each code")
            keep += [_ptr(gap_xbits, "uint8_t[]"), _ptr(gap_extra, "uint8_t[]")]
            w.gap_xbits, w.gap_extra = keep[-2], keep[-1]
            pad = _EXTRA_PAD
            if gap_extra.size < pad:
                raise ValueError(f"{op}: gap_extra must end with {pad} zero bytes of padding")
            w.gap_extra_bits = 8 * (gap_extra.size - pad)
            w.gap_extra_bytes = gap_extra.size
        elif gap_extra is not None:
            raise ValueError(f"{op}: gap_extra without gap_xbits")
        w.gap_width, w.gap_len, w.gap_delim, w.gap_nstep = (
            gaps.itemsize,
            gaps.size,
            gap_delim,
            gap_step.size,
        )
        w.op_begin = 0
        stream_len = gaps.size
    kind = values.get("kind")
    if kind == "f32":
        vals = _req(values.get("vals"), "vals", (np.float32,), op, ndim=1)
        if vals.size != nnz:
            raise ValueError(f"{op}: vals holds {vals.size} values, expected {nnz}")
        w.val_kind = VAL_F32
        keep.append(_ptr(vals, "float[]"))
        w.vals = keep[-1]
    elif kind in ("dict", "float"):
        codes = _req(values.get("codes"), "codes", (np.uint8, np.uint16), op, ndim=1)
        delim = int(values.get("delim", -1))
        if not 0 <= delim < 1 << (8 * codes.itemsize):
            raise ValueError(f"{op}: bad value delimiter {delim}")
        if (gaps is not None and codes.size != stream_len) or codes.size < stream_len:
            raise ValueError(f"{op}: value stream has {codes.size} symbols, expected {stream_len}")
        keep.append(_ptr(codes, "uint8_t[]"))
        w.vcodes, w.vcode_width, w.vcode_len, w.vdelim = keep[-1], codes.itemsize, codes.size, delim
        if kind == "dict":
            table = _req(values.get("table"), "table", (np.float32,), op, ndim=1)
            if not 0 < table.size <= delim:
                raise ValueError(f"{op}: dict table of {table.size} entries vs delimiter {delim}")
            w.val_kind = VAL_DICT
            keep.append(_ptr(table, "float[]"))
            w.vtable, w.vtable_n = keep[-1], table.size
        else:
            fmt = FMT.get(values.get("fmt"))
            if fmt is None:
                raise NotFusable(f"{op}: no float kernel for {values.get('fmt')!r}")
            mb = int(values.get("mant_bits", -1))
            fb = _WBITS[fmt] - 1 - mb
            if not 0 < mb < _WBITS[fmt] - 1 or fb > 16:
                raise ValueError(f"{op}: bad mant_bits {mb} for {values.get('fmt')}")
            table = _req(values.get("table"), "table", (np.uint16,), op, ndim=1)
            if not 0 < table.size <= delim or int(table.max()) >> fb:
                raise ValueError(f"{op}: bad exponent table")
            planes = _req(values.get("planes"), "planes", (np.uint8,), op, ndim=2)
            npl, rem = divmod(mb + 1, 8)
            if planes.shape != (npl, nnz):
                raise ValueError(f"{op}: planes have shape {planes.shape}, expected {(npl, nnz)}")
            w.val_kind, w.val_fmt = VAL_FLOAT, fmt
            w.mant_bits, w.field_bits = mb, fb
            keep += [_ptr(table, "uint16_t[]"), _ptr(planes, "uint8_t[]")]
            w.etable, w.etable_n, w.planes, w.nplanes = keep[-2], table.size, keep[-1], npl
            if rem:
                top = _req(values.get("top"), "top", (np.uint8,), op, ndim=1)
                if top.size != (nnz * rem + 7) // 8:
                    raise ValueError(
                        f"{op}: top holds {top.size} bytes, expected {(nnz * rem + 7) // 8}"
                    )
                keep.append(_ptr(top, "uint8_t[]"))
                w.top, w.top_bytes = keep[-1], top.size
    else:
        raise ValueError(f"{op}: values kind must be 'f32', 'dict' or 'float', not {kind!r}")
    return w, keep


def csr_mm(xt, row_ptr, cols, vals, ncols: int, yt=None):
    """``yt = W @ xt`` for W in CSR form (row_ptr uint64, cols uint32, vals float32).

    Validates everything, including ``cols < ncols`` (an O(nnz) pass);
    :class:`CSRWeight` does that once at construction instead.
    """
    op = "csr_mm"
    _req(row_ptr, "row_ptr", (np.uint64,), op, ndim=1)
    _req(cols, "cols", (np.uint32,), op, ndim=1)
    _req(vals, "vals", (np.float32,), op, ndim=1)
    if row_ptr.size < 1 or cols.size != vals.size:
        raise ValueError(f"{op}: row_ptr must have nrows + 1 entries and cols/vals one per nnz")
    if cols.size and int(cols.max()) >= ncols:
        raise ValueError(f"{op}: a column index is >= ncols ({ncols})")
    return _csr_call(xt, row_ptr, cols, vals, int(ncols), yt)


def _csr_call(xt, row_ptr, cols, vals, ncols, yt):
    op = "csr_mm"
    if not 0 < ncols < 1 << 32:
        raise ValueError(f"{op}: bad ncols {ncols}")
    nrows = row_ptr.size - 1
    batch, yt = _check_xy(xt, yt, nrows, ncols, op)
    st = lib.dnk_csr_mm(
        nrows,
        ncols,
        _ptr(row_ptr, "uint64_t[]"),
        _ptr(cols, "uint32_t[]"),
        _ptr(vals, "float[]"),
        vals.size,
        _ptr(xt, "float[]"),
        batch,
        ffi.from_buffer("float[]", yt, require_writable=True),
    )
    _check(st, op)
    return yt


# ---- reusable stream workspaces (O(nnz) symbols, never O(dense)) ---------------------------------
class _Streams(threading.local):
    def __init__(self):
        self.bufs: dict = {}

    def get(self, slot: str, dtype, n: int) -> np.ndarray:
        dtype = np.dtype(dtype)
        b = self.bufs.get((slot, dtype))
        if b is None or b.size < n:
            b = self.bufs[(slot, dtype)] = np.empty(max(n, 1), dtype=dtype)
        return b[:n]

    def clear(self):
        self.bufs.clear()


_WS = _Streams()


def clear_workspace() -> None:
    """Free the stream workspaces (they grow again on the next call)."""
    _WS.clear()


def _table_as_f32(bits: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float32":
        return np.ascontiguousarray(bits.view(np.float32))
    if dtype == "float16":
        return bits.view(np.float16).astype(np.float32)
    if dtype == "bfloat16":
        return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)
    raise NotFusable(f"no fused kernel for {dtype} weights")


def _rows_cols(enc: Encoded) -> tuple[int, int]:
    shape = [int(s) for s in enc.meta["shape"]]
    if len(shape) < 2:
        raise NotFusable("fused kernels need a weight with at least 2 dimensions")
    nrows = shape[0]
    ncols = int(np.prod(shape[1:], dtype=np.int64))
    if nrows == 0 or ncols == 0 or ncols >= 1 << 32:
        raise NotFusable(f"no fused kernel for shape {shape}")
    return nrows, ncols


_META_ALWAYS = {"v", "dtype", "shape", "torch", "crc32", "n"}


def _known(enc: Encoded, meta_keys: set, array_keys: set) -> None:
    """Fuse only encodings whose every part this module understands.

    A codec format that grows a field (a new escape, a new joint symbol) must fall back to
    the decode path, not be read wrongly: unknown meta keys or parts raise NotFusable.
    """
    extra = set(enc.meta) - meta_keys - _META_ALWAYS
    parts = set(enc.arrays) - array_keys
    if extra or parts or "quant" in enc.meta:
        raise NotFusable(
            f"{enc.codec_id}: fields {sorted(extra | parts)} are not understood by the kernels"
        )


class _ValueSource:
    """How to get a layer's values each call: RAS to extract + fixed arrays."""

    def __init__(self, enc: Encoded, dtype: str, n: int, nblocks: int):
        self.ras = None
        self.fixed: dict = {"nnz": n}
        cid = enc.codec_id
        if cid == "raw":
            _known(enc, set(), {"data"})
            data = enc.arrays["data"]
            if data.size != n:
                raise CodecError("fused: raw values do not match the layer")
            if dtype == "float32":
                self.fixed.update(kind="f32", vals=np.ascontiguousarray(data).view(np.float32))
            else:  # widen once per call; the table conversion is exact
                self._raw = data
                self.fixed.update(kind="f32")
        elif cid == "dict":
            _known(enc, {"form"}, {"table"})
            ras, table = enc.ras["codes"], enc.arrays["table"]
            if len(ras) != n or ras.nblocks != nblocks or table.size != ras.k:
                raise CodecError("fused: dict values do not match the layer")
            self.ras = ras
            self.fixed.update(kind="dict", delim=ras.DELIM, table=_table_as_f32(table, dtype))
        elif cid == "float":
            _known(enc, {"form", "nplanes", "rem", "k"}, {"exp_table", "raw", "raw_top"})
            ras = enc.ras["exp"]
            if dtype not in FMT:
                raise NotFusable(f"no fused kernel for {dtype} weights")
            if len(ras) != n or ras.nblocks != nblocks:
                raise CodecError("fused: float values do not match the layer")
            k = int(enc.meta.get("k", 0))
            self.ras = ras
            self.fixed.update(
                kind="float",
                fmt=dtype,
                delim=ras.DELIM,
                mant_bits=_MANT_BITS[dtype] - k,
                table=np.ascontiguousarray(enc.arrays["exp_table"], dtype=np.uint16),
                planes=np.ascontiguousarray(enc.arrays["raw"]),
            )
            if "raw_top" in enc.arrays:
                self.fixed["top"] = np.ascontiguousarray(enc.arrays["raw_top"])
        else:
            raise NotFusable(f"no fused kernel for {cid!r} values")
        if self.ras is not None and self.ras.code_dtype.itemsize > 2:
            raise NotFusable("value codes wider than 16 bits")
        self.dtype = dtype

    def values(self, rows=None) -> dict:
        v = dict(self.fixed)
        if self.ras is not None:
            r0, r1 = rows if rows is not None else (0, self.ras.nblocks)
            s0, s1 = self.ras.body_span(r0, r1)
            v["codes"] = self.ras.body(r0, r1, out=_WS.get("v", self.ras.code_dtype, s1 - s0))
        elif "vals" not in v:
            v["vals"] = _table_as_f32(self._raw, self.dtype)
        return v


class FusedWeight:
    """A compressed weight multiplied straight from its compressed form.

    Built from an :class:`~dnn_adapter.codecs.Encoded` of a ``(nrows, ...)`` weight:
    ``sparse`` (any value child), or dense ``float`` / ``dict`` encodings; every call of
    :meth:`matmul_t` extracts the code streams into a reused O(nnz)-symbol workspace and runs
    the C kernel (for dense encodings a band of rows at a time). The weight is read as
    ``nrows x ncols`` with ``ncols`` the product of the trailing dimensions (Linear, or a
    conv filter flattened as ``unfold`` lays out its columns). Raises :class:`NotFusable`
    for other encodings and dtypes (fp64, integers).

    Arithmetic is float32: results equal a float64 reference to rounding, not a dense GEMM
    bit for bit. Not thread-safe (shared workspace), like the streaming decode.
    """

    def __init__(self, enc: Encoded):
        self.enc = enc
        self.dtype = str(enc.meta.get("dtype"))
        if self.dtype not in FMT:
            raise NotFusable(f"no fused kernel for {self.dtype} weights")
        self.nrows, self.ncols = _rows_cols(enc)
        n = self.nrows * self.ncols
        cid = enc.codec_id
        if cid == "sparse":
            # zsign / zero_sign: the signs of the zeros (-0.0 from torch.nn.utils.prune's
            # mask product); the product skips zeros of either sign alike
            _known(enc, {"form", "block_len", "nnz", "esc", "rice", "zsign"},
                   {"gap_table", "gap_extra", "zero_sign"})
            gaps, table = enc.ras["gaps"], enc.arrays["gap_table"]
            nnz = int(enc.meta["nnz"])
            if int(enc.meta["block_len"]) != self.ncols or gaps.nblocks != self.nrows:
                raise NotFusable("sparse blocks are not the weight's rows (encode with "
                                 "max_rows_per_block=1)")
            if len(gaps) != nnz or table.dtype.kind != "u" or table.size != gaps.k:
                raise CodecError("fused: sparse gap parts do not match")
            sym = table.astype(np.int64)
            if (sym < 0).any():
                raise CodecError("fused: bad gap table")
            self.xbits = self.extra = None
            esc = enc.meta.get("esc")
            rice = _rice_of(enc)
            if rice and esc is not None:
                raise CodecError("fused: Rice-coded distances with an escape threshold")
            if esc is not None or rice:
                # per code: the smallest distance it stands for (step - 1) and the extra
                # bits the kernel adds to it (escapes: 2**b - 1 + bits; Rice: the low bits)
                if rice:  # bound the quotients before the shift can overflow int64
                    if table.size and int(sym.max()) >= self.ncols:
                        raise CodecError("fused: a gap is longer than a row")
                    b = np.full(sym.size, rice, dtype=np.int64)
                    sym = sym << rice
                else:
                    T = int(esc)
                    is_esc = sym >= T
                    b = np.where(is_esc, sym - T, 0)
                    if T < 0 or (b > 32).any():
                        raise CodecError("fused: bad escape symbols")
                    sym = np.where(is_esc, T + (np.int64(1) << b) - 1, sym)
                self.xbits = b.astype(np.uint8)
                extra = enc.arrays["gap_extra"]
                if extra.dtype != np.uint8 or extra.ndim != 1:
                    raise CodecError("fused: bad gap_extra part")
                self.extra = np.zeros(extra.size + _EXTRA_PAD, dtype=np.uint8)  # padded copy
                self.extra[: extra.size] = extra
                self.extra.setflags(write=False)
            elif "gap_extra" in enc.arrays:
                raise CodecError("fused: gap_extra without an escape threshold or Rice width")
            if table.size and int(sym.max()) >= self.ncols:
                raise CodecError("fused: a gap is longer than a row")
            self.gaps = gaps
            self._rows_dec = None
            self.step = (sym + 1).astype(np.uint32)
            self.step.setflags(write=False)
            child = enc.children["values"]
            if child.meta.get("dtype") != self.dtype or child.meta.get("n") != nnz:
                raise CodecError("fused: sparse values do not match")
            self.src = _ValueSource(child, self.dtype, nnz, self.nrows)
            self.nnz = nnz
        elif cid in ("float", "dict"):
            ras = next(iter(enc.ras.values()))
            if ras.block_len != self.ncols or ras.nblocks != self.nrows:
                raise NotFusable(f"{cid} blocks are not the weight's rows")
            self.gaps = None
            self.src = _ValueSource(enc, self.dtype, n, self.nrows)
            self.nnz = n
            self._rows_dec = self._band_decoder(enc, cid, n)
        else:
            raise NotFusable(f"no fused kernel for the {cid!r} codec")
        self.band = max(1, _CHUNK_SYMBOLS // (self.ncols + 1))
        self._prep = None  # _walk_layer's checked struct
        self._geo: dict = {}  # conv2d's checked geometries, by input shape and arguments

    @staticmethod
    def _band_decoder(enc, cid, n):
        """The codec's fused table-driven row decoder (what block-wise streaming decodes
        with), or None: ``f(flat_bits, rows, at)``. Dense rows are then decoded a band at
        a time into a float32 buffer and multiplied from it, about twice as fast as
        extracting the codes and merging them in the kernel (4096x4096 fp32, batch 1)."""
        try:
            plan = get_codec(cid)._plan_bits(enc, n)
        except (CodecError, ValueError):
            return None
        return getattr(plan, "some_rows", None)

    @property
    def sparse(self) -> bool:
        return self.gaps is not None

    def _dense_bands(self, xt, out):
        """Dense rows: decode bands of about ``_BAND_ELEMS`` values with the codec's row
        decoder into one reused buffer (float32 once widened), multiply each band."""
        from ._bits import dtype_info

        ncols = self.ncols
        ub = dtype_info(self.dtype).uint
        band = max(1, _BAND_ELEMS // ncols)
        bits = _WS.get("vb", ub, min(band, self.nrows) * ncols)
        for r0 in range(0, self.nrows, band):
            r1 = min(self.nrows, r0 + band)
            m = (r1 - r0) * ncols
            self._rows_dec(bits[:m], np.arange(r0, r1), np.arange(r1 - r0))
            vals = _table_as_f32(bits[:m], self.dtype)
            layer_mm(xt, values={"kind": "f32", "vals": vals, "nnz": m}, nrows=r1 - r0,
                     ncols=ncols, yt=out[r0:r1])
        return out

    def matmul_t(self, xt: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``W @ xt`` for ``xt`` of shape ``(ncols, batch)`` (float32); ``(nrows, batch)``."""
        kw = {"nrows": self.nrows, "ncols": self.ncols}
        if self.gaps is not None:
            op = "layer_mm"
            batch, out = _check_xy(xt, out, self.nrows, self.ncols, op)
            prep = self._walk_layer(op)  # held over the call: it keeps the buffers alive
            return _mm_walk(op, prep[1], xt, batch, out)
        if out is None:
            _check_xy(xt, None, self.nrows, self.ncols, "FusedWeight.matmul_t")
            out = np.empty((self.nrows, xt.shape[1]), dtype=np.float32)
        if self._rows_dec is not None:
            _check_xy(xt, out, self.nrows, self.ncols, "FusedWeight.matmul_t")
            return self._dense_bands(xt, out)
        for r0 in range(0, self.nrows, self.band):
            r1 = min(self.nrows, r0 + self.band)
            layer_mm(xt, values=self.src.values((r0, r1)), rows=(r0, r1), yt=out, **kw)
        return out

    def conv2d(self, x: np.ndarray, kernel_size, padding=(0, 0),
               dilation=(1, 1), stride=(1, 1)) -> np.ndarray:
        """Sparse encodings: the direct convolution of ``x`` (float32 ``(batch, cin, h,
        w)``) with this ``(nrows, cin, kh, kw)`` weight, no ``unfold``; returns ``(nrows,
        batch * oh * ow)`` (see :func:`layer_conv2d`)."""
        if self.gaps is None:
            raise NotFusable("conv2d: only sparse encodings have a direct convolution")
        op = "conv2d"
        x, cv, need, yshape = _conv_args(self._geo, op, x, self.nrows, self.ncols, kernel_size,
                                         stride, padding, dilation)
        prep = self._walk_layer(op)  # held over the call: it keeps the buffers alive
        return _conv_walk(op, prep[1], cv, x, need, yshape)

    def _walk_layer(self, op):
        """``(key, dnk_layer_t, buffers...)`` of this sparse weight's streams, extracted now
        into the thread's workspaces. The checked struct is rebuilt only when a workspace
        array moved (another size, another thread): the fixed parts never change."""
        g = self.gaps
        gs = g.body(out=_WS.get("g", g.code_dtype, g.n + g.nblocks))
        vals = self.src.values()
        key = (_addr(gs), gs.size) + tuple(
            (k, _addr(v), v.size) for k, v in vals.items() if isinstance(v, np.ndarray)
        )
        prep = self._prep
        if prep is None or prep[0] != key:
            w, keep = _layer(op, self.nrows, self.ncols, vals, gs, self.step, g.DELIM,
                             self.xbits, self.extra, None)
            prep = self._prep = (key, w, keep, gs, vals)
        return prep

    def to_csr(self) -> CSRWeight:
        """The decoded O(nnz) sparse form (sparse encodings only), for repeated products."""
        if self.gaps is None:
            raise NotFusable("to_csr: only sparse encodings have a CSR form")
        from .codecs import SparseCodec

        n = self.nrows * self.ncols
        pos, counts = SparseCodec()._positions(self.enc, n)  # O(nnz), once
        row_ptr = np.zeros(self.nrows + 1, dtype=np.uint64)
        np.cumsum(counts, out=row_ptr[1:])
        cols = pos % self.ncols
        child = self.enc.children["values"]
        bits = get_codec(child.codec_id)._decode_bits  # O(nnz) values, once
        from ._bits import dtype_info

        ub = np.empty(self.nnz, dtype=dtype_info(self.dtype).uint)
        bits(child, ub)
        vals = _table_as_f32(ub, self.dtype)
        return CSRWeight(row_ptr, cols.astype(np.uint32), vals, self.ncols)


class CSRWeight:
    """A weight in CSR form (row_ptr uint64, cols uint32, vals float32), checked once.

    The arrays are private copies made read-only, so :meth:`matmul_t` can skip the O(nnz)
    column check on every call.
    """

    def __init__(self, row_ptr, cols, vals, ncols: int):
        op = "CSRWeight"
        row_ptr = np.array(row_ptr, dtype=np.uint64, copy=True)
        cols = np.array(cols, dtype=np.uint32, copy=True)
        vals = np.array(vals, dtype=np.float32, copy=True)
        if row_ptr.ndim != 1 or row_ptr.size < 1 or cols.ndim != 1 or cols.shape != vals.shape:
            raise ValueError(f"{op}: bad array shapes")
        if (
            int(row_ptr[0]) != 0
            or int(row_ptr[-1]) != cols.size
            or (np.diff(row_ptr.astype(np.int64)) < 0).any()
        ):
            raise ValueError(f"{op}: row_ptr must rise from 0 to nnz")
        if cols.size and int(cols.max()) >= ncols:
            raise ValueError(f"{op}: a column index is >= ncols ({ncols})")
        for a in (row_ptr, cols, vals):
            a.setflags(write=False)
        self.row_ptr, self.cols, self.vals, self.ncols = row_ptr, cols, vals, int(ncols)
        self.nrows = row_ptr.size - 1
        self._geo: dict = {}  # conv2d's checked geometries

    @property
    def nbytes(self) -> int:
        return int(self.row_ptr.nbytes + self.cols.nbytes + self.vals.nbytes)

    def matmul_t(self, xt: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return _csr_call(xt, self.row_ptr, self.cols, self.vals, self.ncols, out)

    def conv2d(self, x: np.ndarray, kernel_size, padding=(0, 0), dilation=(1, 1),
               stride=(1, 1)) -> np.ndarray:
        """The direct convolution (as :meth:`FusedWeight.conv2d`, no ``unfold``) from this
        CSR form; ``(nrows, batch * oh * ow)``."""
        op = "csr_conv2d"
        x, cv, need, yshape = _conv_args(self._geo, op, x, self.nrows, self.ncols, kernel_size,
                                         stride, padding, dilation)
        ws, y = _conv_out(need, yshape)
        st = lib.dnk_csr_conv2d(
            self.nrows, self.ncols, _ptr(self.row_ptr, "uint64_t[]"),
            _ptr(self.cols, "uint32_t[]"), _ptr(self.vals, "float[]"), self.vals.size, cv,
            _ptr(x, "float[]"), ffi.from_buffer("float[]", ws, require_writable=True), need,
            ffi.from_buffer("float[]", y, require_writable=True),
        )
        _check(st, op)
        return y
