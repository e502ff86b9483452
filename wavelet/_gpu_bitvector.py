"""DeviceBitVector: the GPU twin of BitVector (CuPy; kernels in cuda/bitvector.cu).

Private module; the public names are re-exported by :mod:`wavelet.cuda`.
CuPy is imported only when a device object is made, never at import time.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .cuda import _module as _m

__all__ = ["DeviceBitVector", "as_device_queries", "upload_sections"]

_SECTIONS = ("WRDS", "BLKS", "SUPR", "SEL1", "SEL0")
_U64_MAX = (1 << 64) - 1


def upload_sections(sections, device=None) -> dict:
    """Upload serialized sections (tag -> numpy array) as they are: no re-encoding."""
    cp = _m._cupy()
    with cp.cuda.Device(device):
        return {t: cp.asarray(np.ascontiguousarray(a)) for t, a in sections}


def as_device_queries(q, op: str):
    """Any integer array-like (numpy, CuPy, list) -> flat contiguous uint64 CuPy
    array on the current device, plus the original shape. Negative values wrap
    to huge ones and are then reported out of range by the kernel."""
    cp = _m._cupy()
    a = q if isinstance(q, cp.ndarray) else cp.asarray(np.asarray(q))
    if a.dtype.kind not in "iu":
        if a.size == 0:
            a = a.astype(cp.uint64)
        else:
            raise TypeError(f"{op}: queries must be integers, got dtype {a.dtype}")
    shape = a.shape
    return cp.ascontiguousarray(a.ravel()).astype(cp.uint64, copy=False), shape


def _check_bad(bad, op: str) -> None:
    b = int(bad.get()[0])
    if b != _U64_MAX:
        raise IndexError(f"{op}: index out of range (query #{b})")


class DeviceBitVector:
    """A :class:`~wavelet.BitVector` in GPU memory, with batch queries.

    Made by :meth:`wavelet.BitVector.to_device`. Holds the same five arrays as
    the serialized form (``words``, ``blocks``, ``super``, ``sel1``, ``sel0``;
    ``wavelet_c/wavelet.h`` documents them), uploaded unchanged.

    Every query takes an integer array (CuPy, numpy or list; any shape) and
    returns a CuPy array of the same shape, computed on the current CuPy
    stream. To run on torch's stream, wrap calls in
    ``with wavelet.cuda.torch_stream():``. With ``check=True`` (default) an
    out-of-range query raises ``IndexError`` naming the first bad query, which
    synchronizes the stream once; with ``check=False`` nothing synchronizes and
    bad queries yield ``2**64-1`` (``255`` for access). Kernels never read out
    of bounds either way.
    """

    __slots__ = ("_a", "_nbits", "_ones", "_device", "__weakref__")

    def __init__(self, meta, arrays: dict, device_id: int):
        nbits, ones = (int(x) for x in meta)
        self._nbits, self._ones = nbits, ones
        self._a = arrays
        self._device = device_id

    @classmethod
    def from_host(cls, bv, device=None) -> DeviceBitVector:
        """Upload a :class:`~wavelet.BitVector` (its serialized sections, with the fast index)."""
        cp = _m._cupy()
        meta, secs = bv._device_parts()
        tags = tuple(t for t, _ in secs)
        if tags != _SECTIONS:
            raise ValueError(f"DeviceBitVector: unexpected sections {tags}")
        with cp.cuda.Device(device) as dev:
            return cls(meta, upload_sections(secs, dev.id), dev.id)

    # ---- properties ---------------------------------------------------------
    def __len__(self) -> int:
        return self._nbits

    def count(self, bit: int = 1) -> int:
        if bit not in (0, 1):
            raise ValueError("count: bit must be 0 or 1")
        return self._ones if bit else self._nbits - self._ones

    @property
    def device(self):
        return _m._cupy().cuda.Device(self._device)

    @property
    def words(self):
        """The packed bits (CuPy uint64, little-endian bit order)."""
        return self._a["WRDS"]

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self._a.values())

    def to_host(self):
        """Download into a (validated) :class:`~wavelet.BitVector`."""
        from ._bitvector import BitVector

        secs = {t: self._a[t].get() for t in _SECTIONS}
        return BitVector._from_parts((self._nbits, self._ones), secs)

    def __repr__(self) -> str:
        return f"DeviceBitVector(nbits={self._nbits}, ones={self._ones}, device={self._device})"

    # ---- queries --------------------------------------------------------------
    def _run(self, op, expr, args_before, q, out_dtype, check, stream):
        cp = _m._cupy()
        with self.device, (stream if stream is not None else contextlib.nullcontext()):
            qd, shape = as_device_queries(q, op)
            n = qd.size
            out = cp.empty(n, dtype=out_dtype)
            if n:
                bad = cp.full(1, _U64_MAX, dtype=cp.uint64)
                fn = _m.function("bitvector.cu", expr)
                grid, block = _m.launch_config(n)
                fn((grid,), (block,), (*args_before, qd, np.uint64(n), out, bad))
                if check:
                    _check_bad(bad, op)
            return out.reshape(shape)

    def access(self, i, *, check: bool = True, stream=None):
        """Bits at positions *i* (uint8 CuPy array)."""
        cp = _m._cupy()
        a = self._a
        return self._run(
            "access", "wv_bv_access_k", (a["WRDS"], np.uint64(self._nbits)), i, cp.uint8, check,
            stream,
        )

    def _rank(self, one, i, check, stream):
        cp = _m._cupy()
        a = self._a
        args = (a["WRDS"], a["BLKS"], a["SUPR"], np.uint64(self._nbits))
        op = "rank1" if one else "rank0"
        return self._run(op, f"wv_bv_rank_k<{one}>", args, i, cp.uint64, check, stream)

    def rank1(self, i, *, check: bool = True, stream=None):
        """Ones in ``[0, i)`` for each ``0 <= i <= len`` (uint64 CuPy array)."""
        return self._rank(1, i, check, stream)

    def rank0(self, i, *, check: bool = True, stream=None):
        """Zeros in ``[0, i)`` for each ``0 <= i <= len``."""
        return self._rank(0, i, check, stream)

    def rank(self, bit: int, i, **kw):
        if bit not in (0, 1):
            raise ValueError("rank: bit must be 0 or 1")
        return self._rank(bit, i, kw.get("check", True), kw.get("stream"))

    def _select(self, one, k, check, stream):
        cp = _m._cupy()
        a = self._a
        samp = a["SEL1"] if one else a["SEL0"]
        args = (
            a["WRDS"],
            a["BLKS"],
            a["SUPR"],
            samp,
            np.uint64(a["WRDS"].size),
            np.uint64(a["BLKS"].size),
            np.uint64(self.count(one)),
        )
        op = "select1" if one else "select0"
        return self._run(op, f"wv_bv_select_k<{one}>", args, k, cp.uint64, check, stream)

    def select1(self, k, *, check: bool = True, stream=None):
        """Position of the ``k``-th one (0-based) for each k (uint64 CuPy array)."""
        return self._select(1, k, check, stream)

    def select0(self, k, *, check: bool = True, stream=None):
        """Position of the ``k``-th zero (0-based) for each k."""
        return self._select(0, k, check, stream)

    def select(self, bit: int, k, **kw):
        if bit not in (0, 1):
            raise ValueError("select: bit must be 0 or 1")
        return self._select(bit, k, kw.get("check", True), kw.get("stream"))

    # ---- bulk extract ---------------------------------------------------------
    def extract(self, start: int = 0, stop: int | None = None, *, out=None, packed=False,
                stream=None):
        """Bits ``[start, stop)`` into a device array.

        ``packed=False``: one byte (0/1) per bit, into *out* (uint8 or bool CuPy
        array of length ``stop - start``) or a new uint8 array. ``packed=True``:
        ``ceil((stop-start)/64)`` uint64 words re-based to bit 0 (padding zero).
        """
        cp = _m._cupy()
        stop = self._nbits if stop is None else int(stop)
        start = int(start)
        if not 0 <= start <= stop <= self._nbits:
            raise IndexError(f"extract: range [{start}, {stop}) out of range")
        m = stop - start
        nout = (m + 63) // 64 if packed else m
        dt = cp.uint64 if packed else cp.uint8
        with self.device, (stream if stream is not None else contextlib.nullcontext()):
            if out is None:
                out = cp.empty(nout, dtype=dt)
            else:
                _check_out(out, nout, (dt,) if packed else (cp.uint8, cp.bool_), "extract")
            if nout:
                grid, block = _m.launch_config(nout)
                if packed:
                    fn = _m.function("bitvector.cu", "wv_bv_extract_words_k")
                    args = (self.words, np.uint64(self.words.size), np.uint64(start),
                            np.uint64(m), out)
                else:
                    fn = _m.function("bitvector.cu", "wv_bv_extract_bits_k")
                    args = (self.words, np.uint64(start), np.uint64(m), out)
                fn((grid,), (block,), args)
        return out


def _check_out(out, n: int, dtypes, op: str) -> None:
    cp = _m._cupy()
    if not isinstance(out, cp.ndarray):
        raise TypeError(f"{op}: out must be a CuPy array")
    if out.dtype not in tuple(cp.dtype(d) for d in dtypes):
        raise TypeError(f"{op}: out has dtype {out.dtype}, expected one of {dtypes}")
    if out.size != n or not out.flags.c_contiguous:
        raise ValueError(f"{op}: out must be C-contiguous with {n} elements")

