"""Bulk assembly of fixed-width words from separately stored bit fields (C: fields.c)."""

from __future__ import annotations

import numpy as np

from ._core import check, ffi, lib

__all__ = ["gap_positions", "gap_scatter", "lookup", "merge_float_fields", "zero_signs"]


def _req(a, name, dtypes, *, writable=False, op="merge_float_fields"):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{op}: {name} must be a numpy array")
    if a.dtype not in dtypes:
        raise TypeError(
            f"{op}: {name} has dtype {a.dtype}, expected one of "
            f"{[str(np.dtype(d)) for d in dtypes]}"
        )
    if not a.flags.c_contiguous or not a.flags.aligned:
        raise ValueError(f"{op}: {name} must be C-contiguous and aligned")
    if writable and not a.flags.writeable:
        raise ValueError(f"{op}: {name} must be writable")


def merge_float_fields(
    codes, table, exp_bits: int, mant_bits: int, planes, top, out, *, block_len=None,
    block_stride=None, start: int = 0, total: int | None = None,
):
    """Rebuild IEEE-like words from an exponent code stream and raw sign/mantissa bits.

    ``out[i] = sign << (W-1) | table[code(i)] << mant_bits | mantissa`` where the
    ``mant_bits + 1`` raw bits of element ``i`` are ``planes[p, i]`` (byte ``p``) for
    ``p < (mant_bits+1)//8`` and, for the remaining ``(mant_bits+1) % 8`` bits, the
    LSB-first bit-packed ``top``. Integer operations only, in C with the GIL released.

    The "exponent" field may be wider than the IEEE exponent (it can carry the top
    mantissa bits too): any ``exp_bits <= 16`` with ``1 + exp_bits + mant_bits`` equal to
    the word width is accepted.

    A sub-range can be rebuilt: ``out`` then receives elements ``start .. start +
    out.size`` of a tensor of ``total`` elements (``planes`` and ``top`` always describe
    the whole tensor); disjoint ranges may be decoded from several threads at once.
    Codes are read in rows: with ``j = i - start``, ``code(i) = codes[(j // block_len) *
    block_stride + j % block_len]``; by default ``block_len = block_stride = out.size`` (a
    plain array). A stride larger than the row skips per-row separators (a RAS's
    delimiters) without a copy.

    Parameters
    ----------
    codes : ndarray of uint8 or uint16, 1-D
    table : ndarray of uint16 (exponent field value per code)
    exp_bits, mant_bits : int
        Field widths; ``1 + exp_bits + mant_bits`` must equal the bit width of ``out``.
    planes : ndarray of uint8, shape (P, total)
    top : ndarray of uint8 or None
    out : ndarray of uint16/uint32/uint64, 1-D, written in place
    block_len, block_stride : int, optional
        Row length and row stride of *codes* (see above).
    start, total : int, optional
        The range's first element and the tensor's element count (default: ``0`` and
        ``out.size``).

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
    count = out.size
    start = int(start)
    total = count if total is None else int(total)
    if start < 0 or total < 0 or start + count > total:
        raise ValueError(
            f"merge_float_fields: range [{start}, {start + count}) outside 0..{total}"
        )
    if block_len is None and block_stride is None:
        block_len = block_stride = max(count, 1)
        if codes.size != count:
            raise ValueError("merge_float_fields: codes and out sizes disagree")
    else:
        block_len = int(block_len if block_len is not None else block_stride)
        block_stride = int(block_stride if block_stride is not None else block_len)
        if block_len < 1 or block_stride < block_len:
            raise ValueError("merge_float_fields: need 1 <= block_len <= block_stride")
        if count and ((count - 1) // block_len) * block_stride + (count - 1) % block_len >= (
            codes.size
        ):
            raise ValueError("merge_float_fields: codes too short for the rows")
    nplanes, rem = divmod(int(mant_bits) + 1, 8)
    if planes.size != nplanes * total:
        raise ValueError(
            f"merge_float_fields: planes hold {planes.size} bytes, expected {nplanes} x {total}"
        )
    if top is None:
        top = np.zeros(0, np.uint8)
    _req(top, "top", (np.uint8,))
    st = lib.wv_fields_merge_float(
        ffi.from_buffer(codes),
        codes.itemsize,
        codes.size,
        block_len,
        block_stride,
        ffi.from_buffer("uint16_t[]", table),
        table.size,
        int(exp_bits),
        int(mant_bits),
        ffi.from_buffer("uint8_t[]", planes),
        planes.size,
        ffi.from_buffer("uint8_t[]", top),
        top.size,
        total,
        start,
        ffi.from_buffer(out, require_writable=True),
        out.itemsize,
        count,
    )
    check(st, "merge_float_fields")
    return out


_NO_ESC = (1 << 64) - 1


def _gap_head(seq, table, delim, block_len, nblocks, esc, extra, op, rice=None):
    """Checked leading C arguments shared by gap_positions and gap_scatter: (seq, width,
    nseq, delim, table, ntable, esc, rice, extra, extra bytes, block_len, nblocks)."""
    _req(seq, "seq", (np.uint8, np.uint16, np.uint32))
    if not isinstance(table, np.ndarray) or table.dtype.kind != "u":
        raise TypeError(f"{op}: table must be a numpy unsigned-integer array")
    table = np.ascontiguousarray(table, dtype=np.uint64)
    block_len, nblocks, delim = int(block_len), int(nblocks), int(delim)
    if min(block_len, nblocks, delim) < 0:
        raise ValueError(f"{op}: negative size")
    if delim < table.size:
        raise ValueError(f"{op}: the delimiter must not be an operand code")
    rice_v = 0 if rice is None else int(rice)
    if not 0 <= rice_v <= 56:
        raise ValueError(f"{op}: rice must be in 1..56")
    if rice_v and esc is not None:
        raise ValueError(f"{op}: rice and esc do not mix")
    if esc is None and not rice_v:
        esc_v, extra = _NO_ESC, np.zeros(0, np.uint8)
    else:
        esc_v = _NO_ESC if esc is None else int(esc)
        if not 0 <= esc_v <= _NO_ESC or (esc is not None and esc_v == _NO_ESC):
            raise ValueError(f"{op}: esc out of range")
        if extra is None:
            extra = np.zeros(0, np.uint8)
    _req(extra, "extra", (np.uint8,))
    return (ffi.from_buffer(seq), seq.itemsize, seq.size, delim,
            ffi.from_buffer("uint64_t[]", table), table.size, esc_v, rice_v,
            ffi.from_buffer("uint8_t[]", extra), extra.size, block_len, nblocks)


def gap_positions(seq, table, delim: int, block_len: int, nblocks: int, npos: int, *,
                  esc: int | None = None, extra=None, rice: int | None = None):
    """Positions of the non-zeros of a gap-coded sparse sequence (one pass in C).

    *seq* holds, for each of *nblocks* blocks, its operand codes followed by the code
    *delim* (the layout of a RAS body). Operand code ``c`` stands for ``table[c]``, the
    distance to the previous non-zero of the block (to the block start for the first); a
    symbol ``s >= esc`` is an escape whose ``s - esc`` raw bits, taken in order from the
    LSB-first bit-packed *extra*, give the distance ``esc + 2**(s - esc) - 1 + bits``.
    With ``rice=r`` (1..56, no *esc*) every symbol is a quotient and the next ``r`` bits of
    *extra* its low bits: the distance is ``(s << r) | bits`` (Rice coding).
    Returns ``int64`` positions ``block * block_len + offset``, *npos* of them.

    Raises
    ------
    WaveletError
        Corrupt data: an unknown code, an offset outside its block, escape bits missing or
        left over, or delimiter/operand counts other than *nblocks*/*npos*.
    ValueError, TypeError
        Bad argument types or sizes.
    """
    npos = int(npos)
    if npos < 0:
        raise ValueError("gap_positions: negative size")
    head = _gap_head(seq, table, delim, block_len, nblocks, esc, extra, "gap_positions", rice)
    pos = np.empty(npos, dtype=np.int64)
    st = lib.wv_fields_gap_positions(
        *head,
        ffi.from_buffer("int64_t[]", pos, require_writable=True), npos,
    )
    check(st, "gap_positions")
    return pos


def gap_scatter(seq, table, delim: int, block_len: int, nblocks: int, vals, out, *,
                esc: int | None = None, extra=None, rice: int | None = None):
    """Zero *out* and write ``out[p] = vals[k]`` at the positions :func:`gap_positions`
    would list (same arguments, ``npos = vals.size``), in one C pass with no position array.

    *out* is a writable C-contiguous unsigned array of ``nblocks * block_len`` elements and
    *vals* an array of the same dtype. On a corrupt stream :class:`WaveletError` is raised
    and *out* holds partial data.
    """
    head = _gap_head(seq, table, delim, block_len, nblocks, esc, extra, "gap_scatter", rice)
    _req(out, "out", (np.uint8, np.uint16, np.uint32, np.uint64), writable=True)
    _req(vals, "vals", (out.dtype,))
    block_len, nblocks = head[-2:]
    if out.size != block_len * nblocks:
        raise ValueError(f"gap_scatter: out holds {out.size} elements, expected "
                         f"{nblocks} x {block_len}")
    st = lib.wv_fields_gap_scatter(
        *head,
        ffi.from_buffer(vals), vals.size, out.itemsize,
        ffi.from_buffer(out, require_writable=True),
    )
    check(st, "gap_scatter")
    return out


def zero_signs(out, bits, nbits: int):
    """Give the zero words of *out*, in order, their top bit from *bits*, in C, in place.

    Zero ``k`` (the ``k``-th word of *out* equal to 0) becomes ``bit_k << (8 * itemsize - 1)``
    -- for the bit patterns of floats, ``+0.0`` or ``-0.0``. *bits* is a uint8 array of
    ``ceil(nbits / 8)`` bytes, LSB first; *out* a writable C-contiguous unsigned array.

    Raises
    ------
    WaveletError
        *out* holds more or fewer zeros than *nbits* (corrupt data; *out* holds partial
        data).
    ValueError, TypeError
        Inconsistent sizes, dtypes or flags.
    """
    _req(out, "out", (np.uint8, np.uint16, np.uint32, np.uint64), writable=True,
         op="zero_signs")
    _req(bits, "bits", (np.uint8,), op="zero_signs")
    nbits = int(nbits)
    if nbits < 0 or bits.size != (nbits + 7) // 8:
        raise ValueError(f"zero_signs: bits holds {bits.size} bytes, expected "
                         f"{(max(nbits, 0) + 7) // 8} for {nbits} bits")
    st = lib.wv_fields_zero_signs(ffi.from_buffer(out, require_writable=True), out.size,
                                  out.itemsize, ffi.from_buffer(bits), nbits)
    check(st, "zero_signs")
    return out


def lookup(codes, table, out, *, block_len=None, block_stride=None):
    """``out[i] = table[code(i)]`` in C (a dictionary decode), codes read in rows.

    ``code(i) = codes[(i // block_len) * block_stride + i % block_len]``; by default the
    codes are a plain array of ``out.size`` entries. *table* and *out* are unsigned arrays
    of the same item size (1, 2, 4 or 8 bytes); *codes* uint8 or uint16.

    Raises
    ------
    WaveletError
        A code outside the table (corrupt data).
    ValueError, TypeError
        Inconsistent sizes, dtypes or flags.
    """
    _req(codes, "codes", (np.uint8, np.uint16))
    _req(table, "table", (np.uint8, np.uint16, np.uint32, np.uint64))
    _req(out, "out", (table.dtype,), writable=True)
    count = out.size
    if block_len is None and block_stride is None:
        block_len = block_stride = max(count, 1)
        if codes.size != count:
            raise ValueError("lookup: codes and out sizes disagree")
    else:
        block_len = int(block_len if block_len is not None else block_stride)
        block_stride = int(block_stride if block_stride is not None else block_len)
        if block_len < 1 or block_stride < block_len:
            raise ValueError("lookup: need 1 <= block_len <= block_stride")
        if count and ((count - 1) // block_len) * block_stride + (count - 1) % block_len >= (
            codes.size
        ):
            raise ValueError("lookup: codes too short for the rows")
    if count and table.size == 0:
        raise ValueError("lookup: empty table")
    st = lib.wv_fields_lookup(
        ffi.from_buffer(codes), codes.itemsize, codes.size, block_len, block_stride,
        ffi.from_buffer(table), table.size, table.itemsize,
        ffi.from_buffer(out, require_writable=True), count,
    )
    check(st, "lookup")
    return out
