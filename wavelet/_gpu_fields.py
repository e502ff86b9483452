"""Device twin of :func:`wavelet.merge_float_fields` (kernel: cuda/fields.cu).

Private module; :func:`merge_float_fields` is re-exported by :mod:`wavelet.cuda`.
CuPy is imported on first use only. The argument checks (:func:`float_spec`,
:func:`check_parts`) are shared with the fused tree/matrix decodes and run
before any kernel is launched.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ._core import WaveletError
from .cuda import _module as _m

__all__ = ["merge_float_fields", "float_spec", "check_parts", "as_device_out"]

_U64_MAX = (1 << 64) - 1
_WORD = {16: np.dtype(np.uint16), 32: np.dtype(np.uint32), 64: np.dtype(np.uint64)}


def float_spec(exp_bits, mant_bits, op: str):
    """(word dtype, nplanes, rem) for a field split; ValueError if invalid."""
    try:
        e, m = int(exp_bits), int(mant_bits)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: exp_bits and mant_bits must be integers") from None
    if e < 1 or m < 1 or 1 + e + m not in _WORD:
        raise ValueError(
            f"{op}: need exp_bits >= 1, mant_bits >= 1 and 1 + exp_bits + mant_bits in "
            f"(16, 32, 64); got {e}, {m}"
        )
    return _WORD[1 + e + m], (m + 1) // 8, (m + 1) % 8


def _dev(a, name: str, op: str):
    """numpy/CuPy/DLPack array -> CuPy array on the current device (no copy if already there)."""
    cp = _m._cupy()
    if isinstance(a, cp.ndarray):
        return a
    if isinstance(a, np.ndarray):
        return cp.asarray(a)
    if hasattr(a, "__dlpack__"):
        return cp.from_dlpack(a)
    raise TypeError(f"{op}: {name} must be a numpy or CuPy array, got {type(a).__name__}")


def check_parts(table, exp_bits, planes, top, nel: int | None, nplanes: int, rem: int, op: str):
    """Validate and upload the FloatCodec parts. Returns (table, planes, top, nel) as
    contiguous CuPy arrays (top is a 1-byte dummy when rem == 0)."""
    cp = _m._cupy()
    table = _dev(table, "table", op)
    if table.dtype != cp.uint16 or table.ndim != 1:
        raise TypeError(f"{op}: table must be a 1-D uint16 array")
    if not 1 <= table.size <= 1 << 16:
        raise ValueError(f"{op}: table must have 1 to 65536 entries, got {table.size}")
    table = cp.ascontiguousarray(table)
    if int(table.max()) >> int(exp_bits):  # one small reduction; the C core checks too
        raise WaveletError(f"{op}: a table entry is wider than exp_bits={exp_bits} (corrupt data)")
    planes = _dev(planes, "planes", op)
    if planes.dtype != cp.uint8:
        raise TypeError(f"{op}: planes must be uint8")
    if planes.ndim == 2:
        if nel is not None and planes.shape[1] != nel:
            raise ValueError(f"{op}: planes has {planes.shape[1]} columns, expected {nel}")
        nel = planes.shape[1]
        if planes.shape[0] != nplanes:
            raise ValueError(f"{op}: planes must have {nplanes} rows, got {planes.shape[0]}")
    elif planes.ndim == 1:
        if nel is None:
            if nplanes == 0:
                raise ValueError(f"{op}: pass the element count (no planes to infer it from)")
            nel = planes.size // nplanes
        if planes.size != nplanes * nel:
            raise ValueError(f"{op}: planes must hold {nplanes} x {nel} bytes, got {planes.size}")
    else:
        raise ValueError(f"{op}: planes must be 1-D or 2-D")
    planes = cp.ascontiguousarray(planes).reshape(-1)
    if planes.size == 0:
        planes = cp.zeros(1, dtype=cp.uint8)  # never read; a valid pointer
    if rem:
        if top is None:
            raise ValueError(f"{op}: top is required ({rem} bits per element)")
        top = _dev(top, "top", op)
        need = (nel * rem + 7) // 8
        if top.dtype != cp.uint8 or top.ndim != 1 or top.size != need:
            raise ValueError(f"{op}: top must be a 1-D uint8 array of {need} bytes")
        top = cp.ascontiguousarray(top)
        if top.size == 0:
            top = cp.zeros(1, dtype=cp.uint8)
    else:
        top = cp.zeros(1, dtype=cp.uint8)
    return table, planes, top, int(nel)


def as_device_out(out, n: int, dtype, op: str):
    """A new CuPy array, or *out* (CuPy, or any DLPack integer array such as a torch
    tensor ``t.view(torch.int16)``: written in place, zero copy) viewed as *dtype*."""
    cp = _m._cupy()
    if out is None:
        return cp.empty(n, dtype=dtype)
    o = out if isinstance(out, cp.ndarray) else (
        cp.from_dlpack(out) if hasattr(out, "__dlpack__") else None)
    if o is None:
        raise TypeError(f"{op}: out must be a CuPy or DLPack (e.g. torch) array")
    if o.dtype.kind not in "iu" or o.dtype.itemsize != np.dtype(dtype).itemsize:
        raise TypeError(f"{op}: out must be a {np.dtype(dtype).itemsize * 8}-bit integer array "
                        f"(view float tensors as integers), got {o.dtype}")
    if o.size != n or not o.flags.c_contiguous:
        raise ValueError(f"{op}: out must be C-contiguous with {n} elements")
    return o.reshape(-1).view(dtype)


def check_bad(bad, op: str, what: str = "element") -> None:
    b = int(bad.get()[0])
    if b != _U64_MAX:
        raise WaveletError(f"{op}: code outside the table at {what} {b} (corrupt data)")


def merge_float_fields(codes, table, exp_bits: int, mant_bits: int, planes, top=None, out=None,
                       *, check: bool = True, stream=None):
    """Device twin of :func:`wavelet.merge_float_fields` (same parts, same result bits).

    ``out[i] = sign << (W-1) | table[codes[i]] << mant_bits | mantissa``, the
    ``mant_bits + 1`` raw bits of element ``i`` being ``planes[p, i]`` (byte ``p``,
    ``p < (mant_bits+1)//8``) and ``(mant_bits+1) % 8`` bits of the LSB-first
    packed *top*: exactly dnn_adapter's FloatCodec parts. Any split with
    ``1 + exp_bits + mant_bits`` in (16, 32, 64) works (e.g. an "exponent" field
    holding the top mantissa bits too). Integer ops only.

    Parameters
    ----------
    codes : CuPy (or numpy) uint8/uint16 array (n,)
    table : uint16 array, entries ``< 2**exp_bits``
    planes : uint8 array (P, n) (or flat, P*n)
    top : uint8 array or None (when ``(mant_bits+1) % 8 == 0``)
    out : optional CuPy array of the word dtype, or a DLPack integer tensor of
        the same width (e.g. ``torch_tensor.view(torch.int16)``): written in place.
    check : bool
        Raise :class:`~wavelet.WaveletError` for a code outside the table
        (synchronizes once); with ``False`` such elements are 0 and nothing syncs.

    Returns the words (uint16/32/64 CuPy array; ``.view()`` as floats, or
    :func:`wavelet.cuda.to_torch`).
    """
    cp = _m._cupy()
    op = "merge_float_fields"
    word, nplanes, rem = float_spec(exp_bits, mant_bits, op)
    with stream if stream is not None else contextlib.nullcontext():
        c = _dev(codes, "codes", op)
        if c.dtype not in (cp.uint8, cp.uint16) or c.ndim != 1:
            raise TypeError(f"{op}: codes must be a 1-D uint8 or uint16 array")
        c = cp.ascontiguousarray(c)
        n = c.size
        if n == 0:  # as the C core: nothing else is looked at
            return as_device_out(out, 0, word, op)
        table, planes, top, _ = check_parts(table, exp_bits, planes, top, n, nplanes, rem, op)
        out = as_device_out(out, n, word, op)
        if n:
            bad = cp.full(1, _U64_MAX, dtype=cp.uint64)
            fn = _m.function("fields.cu", _m.fields_kernel_name(c.dtype.itemsize, word.itemsize))
            grid, block = _m.launch_config(n, per_thread=4)
            fn((grid,), (block,), (c, np.uint64(n), table, np.uint64(table.size),
                                   np.uint32(mant_bits), planes, np.uint32(nplanes), top,
                                   np.uint32(rem), out, bad))
            if check:
                check_bad(bad, op)
    return out
