"""Bulk assembly of fixed-width words from separately stored bit fields (C: fields.c)."""

from __future__ import annotations

import numpy as np

from ._core import check, ffi, lib

__all__ = ["merge_float_fields"]


def _req(a, name, dtypes, *, writable=False):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"merge_float_fields: {name} must be a numpy array")
    if a.dtype not in dtypes:
        raise TypeError(
            f"merge_float_fields: {name} has dtype {a.dtype}, expected one of "
            f"{[str(np.dtype(d)) for d in dtypes]}"
        )
    if not a.flags.c_contiguous or not a.flags.aligned:
        raise ValueError(f"merge_float_fields: {name} must be C-contiguous and aligned")
    if writable and not a.flags.writeable:
        raise ValueError(f"merge_float_fields: {name} must be writable")


def merge_float_fields(codes, table, exp_bits: int, mant_bits: int, planes, top, out):
    """Rebuild IEEE-like words from an exponent code stream and raw sign/mantissa bits.

    ``out[i] = sign << (W-1) | table[codes[i]] << mant_bits | mantissa`` where the
    ``mant_bits + 1`` raw bits of element ``i`` are ``planes[p, i]`` (byte ``p``) for
    ``p < (mant_bits+1)//8`` and, for the remaining ``(mant_bits+1) % 8`` bits, the
    LSB-first bit-packed ``top``. Integer operations only, in C with the GIL released.

    Parameters
    ----------
    codes : ndarray of uint8 or uint16, shape (n,)
    table : ndarray of uint16 (exponent value per code)
    exp_bits, mant_bits : int
        Field widths; ``1 + exp_bits + mant_bits`` must equal the bit width of ``out``.
    planes : ndarray of uint8, shape (P, n)
    top : ndarray of uint8 or None
    out : ndarray of uint16/uint32/uint64, shape (n,), written in place

    Raises
    ------
    WaveletError
        A code outside the table or an exponent wider than ``exp_bits`` (corrupt data).
    ValueError, TypeError
        Inconsistent shapes or dtypes.
    """
    _req(codes, "codes", (np.uint8, np.uint16))
    _req(table, "table", (np.uint16,))
    _req(planes, "planes", (np.uint8,))
    _req(out, "out", (np.uint16, np.uint32, np.uint64), writable=True)
    n = codes.size
    if out.size != n or (planes.size and planes.size % max(n, 1)):
        raise ValueError("merge_float_fields: codes, planes and out sizes disagree")
    if top is None:
        top = np.zeros(0, np.uint8)
    _req(top, "top", (np.uint8,))
    st = lib.wv_fields_merge_float(
        ffi.from_buffer(codes),
        codes.itemsize,
        n,
        ffi.from_buffer("uint16_t[]", table),
        table.size,
        int(exp_bits),
        int(mant_bits),
        ffi.from_buffer("uint8_t[]", planes),
        planes.size,
        ffi.from_buffer("uint8_t[]", top),
        top.size,
        ffi.from_buffer(out, require_writable=True),
        out.itemsize,
    )
    check(st, "merge_float_fields")
    return out
