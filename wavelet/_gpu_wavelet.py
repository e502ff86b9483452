"""DeviceWaveletMatrix: GPU bulk decode and batch access of a wavelet matrix,
and float reassembly from an exponent stream (kernels in cuda/wavelet_matrix.cu).

Private module; public names are re-exported by :mod:`wavelet.cuda`.
CuPy is imported on first use only.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ._gpu_bitvector import DeviceBitVector, _check_bad, _check_out, as_device_queries
from .cuda import _module as _m

__all__ = ["DeviceWaveletMatrix", "merge_float_bits", "FLOAT_FORMATS"]

_U64_MAX = (1 << 64) - 1

#: float format -> (output bit-pattern dtype, exponent bits, mantissa bits, raw bits/element)
FLOAT_FORMATS = {
    "float32": ("uint32", 8, 23, 24),
    "bfloat16": ("uint16", 8, 7, 8),
    "float16": ("uint16", 5, 10, 11),
}


def _sym_dtype(nlevels: int):
    for bits, dt in ((8, np.uint8), (16, np.uint16), (32, np.uint32), (64, np.uint64)):
        if nlevels <= bits:
            return np.dtype(dt)
    raise ValueError(f"wavelet matrix with {nlevels} levels: at most 64 supported")


def _ctx(stream):
    return stream if stream is not None else contextlib.nullcontext()


def _fmt(fmt: str):
    if fmt not in FLOAT_FORMATS:
        raise ValueError(f"unknown float format {fmt!r}; expected one of {tuple(FLOAT_FORMATS)}")
    return FLOAT_FORMATS[fmt]


def _raw_check(raw, n: int, rbits: int, op: str):
    cp = _m._cupy()
    raw = raw if isinstance(raw, cp.ndarray) else cp.asarray(np.asarray(raw))
    if raw.dtype != cp.uint8 or raw.ndim != 1 or not raw.flags.c_contiguous:
        raise TypeError(f"{op}: raw must be a contiguous 1-D uint8 array")
    need = (n * rbits + 7) // 8
    if raw.size < need:
        raise ValueError(f"{op}: raw holds {raw.size} bytes, need {need} for {n} elements")
    return raw


def _lut_arg(lut, op: str):
    cp = _m._cupy()
    if lut is None:
        return cp.zeros(1, dtype=cp.uint32), 0
    lut = cp.asarray(lut, dtype=cp.uint32)
    if lut.ndim != 1 or lut.size == 0:
        raise ValueError(f"{op}: lut must be a non-empty 1-D array")
    if lut.size < 256:  # symbols are uint8: pad so any symbol indexes in bounds
        lut = cp.concatenate([lut, cp.zeros(256 - lut.size, dtype=cp.uint32)])
    return cp.ascontiguousarray(lut), 1


def merge_float_bits(exponents, raw, fmt: str, *, lut=None, out=None, stream=None):
    """Reassemble float bit patterns from an exponent stream and raw bits.

    Parameters
    ----------
    exponents : CuPy uint8 array (n,)
        The biased exponent field of each element, or an index into *lut*.
    raw : CuPy uint8 array
        Little-endian bit stream, ``R = 1 + mantissa bits`` bits per element
        (fp32: 24, bf16: 8, fp16: 11); element ``j`` is bits ``[j*R, (j+1)*R)``;
        within it, bits ``0..R-2`` are the mantissa and bit ``R-1`` the sign.
    fmt : {"float32", "bfloat16", "float16"}
    lut : optional uint32 array mapping exponent symbols to exponent fields.
    out : optional CuPy uint32 (fp32) / uint16 array (n,), written in place.

    Returns the IEEE bit patterns (uint32 or uint16); ``.view()`` them as floats.
    Integer ops only, so subnormals, NaN payloads and -0.0 survive.
    """
    cp = _m._cupy()
    odt, ebits, mbits, rbits = _fmt(fmt)
    with _ctx(stream):
        e = exponents if isinstance(exponents, cp.ndarray) else cp.asarray(exponents)
        if e.dtype != cp.uint8 or e.ndim != 1:
            raise TypeError("merge_float_bits: exponents must be a 1-D uint8 array")
        e = cp.ascontiguousarray(e)
        n = e.size
        raw = _raw_check(raw, n, rbits, "merge_float_bits")
        lutd, has_lut = _lut_arg(lut, "merge_float_bits")
        if out is None:
            out = cp.empty(n, dtype=odt)
        else:
            _check_out(out, n, (odt,), "merge_float_bits")
        if n:
            fn = _m.function("wavelet_matrix.cu", _m.float_kernel_names(fmt)[1])
            grid, block = _m.launch_config(n)
            fn((grid,), (block,), (e, raw, np.uint64(raw.size), lutd, np.int32(has_lut),
                                   np.uint64(n), out))
    return out


class DeviceWaveletMatrix:
    """A wavelet matrix in GPU memory: bulk decode, fused float decode, batch access.

    Level ``l`` (0 = most significant bit) is bits ``[off_l, off_l + n)`` of a
    :class:`DeviceBitVector`; levels may share one bitvector (levels
    concatenated, ``off_l = l * n``) or each have their own (``off_l = 0``), so
    the device arrays are exactly the host structure's sections.

    Build with :meth:`from_levels` (one host/device bitvector per level) or
    :meth:`from_concatenated` (one bitvector of ``L * n`` bits).
    """

    def __init__(self, n: int, levels, zeros, device_id: int):
        self._n = int(n)
        self._levels = list(levels)  # [(DeviceBitVector, off)]
        self._zeros = [int(z) for z in zeros]
        self._device = device_id
        if len(self._zeros) != len(self._levels):
            raise ValueError("DeviceWaveletMatrix: one zero count per level")
        for bv, off in self._levels:
            if off + self._n > len(bv):
                raise ValueError("DeviceWaveletMatrix: level range past its bitvector")
        self._dtype = _sym_dtype(max(1, len(self._levels)))
        self._table = None

    # ---- construction -----------------------------------------------------------
    @classmethod
    def from_levels(cls, bitvectors, device=None) -> DeviceWaveletMatrix:
        """One bitvector per level, all of length n (host ones are uploaded)."""
        cp = _m._cupy()
        with cp.cuda.Device(device) as dev:
            dbs = [b if isinstance(b, DeviceBitVector) else b.to_device(dev.id)
                   for b in bitvectors]
            n = len(dbs[0]) if dbs else 0
            if any(len(b) != n for b in dbs):
                raise ValueError("from_levels: all levels must have the same length")
            return cls(n, [(b, 0) for b in dbs], [b.count(0) for b in dbs], dev.id)

    @classmethod
    def from_concatenated(cls, bitvector, n: int, nlevels: int, zeros=None,
                          device=None) -> DeviceWaveletMatrix:
        """Levels concatenated in one bitvector: level l is bits [l*n, (l+1)*n).
        *zeros* (per level) is computed with rank if not given."""
        cp = _m._cupy()
        with cp.cuda.Device(device) as dev:
            host = None if isinstance(bitvector, DeviceBitVector) else bitvector
            db = bitvector if host is None else bitvector.to_device(dev.id)
            if len(db) != n * nlevels:
                raise ValueError("from_concatenated: bitvector length != n * nlevels")
            if zeros is None:
                ends = np.arange(nlevels + 1, dtype=np.uint64) * np.uint64(n)
                r0 = (host.rank0(ends) if host is not None
                      else db.rank0(cp.asarray(ends)).get()).astype(np.int64)
                zeros = np.diff(r0).tolist()
            return cls(n, [(db, lv * n) for lv in range(nlevels)], zeros, dev.id)

    @classmethod
    def from_host(cls, wm, device=None) -> DeviceWaveletMatrix:
        """Upload a :class:`wavelet.WaveletMatrix` (its ``_to_parts()`` sections,
        unchanged). Layout per wavelet_c/wavelet.h: one bitvector, level l at bits
        ``[l*stride, l*stride + n)``, ``stride = n`` rounded up to 512.
        Results are the stored (unsigned) symbols."""
        from ._gpu_bitvector import upload_sections

        cp = _m._cupy()
        meta, secs = wm._to_parts()
        n, nlevels = int(meta[0]), int(meta[1])
        nbits, ones = int(meta[-2]), int(meta[-1])
        stride = -(-n // 512) * 512
        with cp.cuda.Device(device) as dev:
            db = DeviceBitVector((nbits, ones), upload_sections(secs, dev.id), dev.id)
            offs = [lv * stride for lv in range(nlevels)]
            if nlevels * stride > nbits:
                raise ValueError("from_host: level layout does not fit the bitvector")
            q = cp.asarray(np.array([[o, o + n] for o in offs], np.uint64).reshape(-1))
            r0 = db.rank0(q).get().astype(np.int64).reshape(-1, 2) if nlevels else np.zeros((0, 2))
            zeros = (r0[:, 1] - r0[:, 0]).tolist()
            return cls(n, [(db, o) for o in offs], zeros, dev.id)

    # ---- properties --------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    @property
    def nlevels(self) -> int:
        return len(self._levels)

    @property
    def dtype(self):
        """Symbol dtype of decode/access results (smallest unsigned type holding L bits)."""
        return self._dtype

    @property
    def device(self):
        return _m._cupy().cuda.Device(self._device)

    def __repr__(self) -> str:
        return f"DeviceWaveletMatrix(n={self._n}, nlevels={self.nlevels}, device={self._device})"

    def _level_args(self, lv: int):
        bv, off = self._levels[lv]
        a = bv._a
        return (a["WRDS"], a["BLKS"], a["SUPR"], np.uint64(a["WRDS"].size), np.uint64(off),
                np.uint64(self._n), np.uint64(self._zeros[lv]),
                np.uint32(self.nlevels - 1 - lv))

    def _level_table(self):
        """Per-level descriptor table for the access kernel (u64[L][7])."""
        cp = _m._cupy()
        if self._table is None:
            rows = []
            for lv, (bv, off) in enumerate(self._levels):
                a = bv._a
                r1 = int(bv.rank1(cp.asarray([off], dtype=cp.uint64)).get()[0])
                rows.append([a["WRDS"].data.ptr, a["BLKS"].data.ptr, a["SUPR"].data.ptr,
                             a["WRDS"].size, off, self._zeros[lv], r1])
            self._table = cp.asarray(np.array(rows, dtype=np.uint64).reshape(-1))
        return self._table

    # ---- bulk decode ----------------------------------------------------------------
    def _passes(self, first_out, cp, tmp_dtype, stop_at: int):
        """Run level passes L-1 .. stop_at; return the buffer holding W_stop_at.
        Levels with the parity of 0 write into first_out when it has tmp_dtype."""
        L = self.nlevels
        n = self._n
        grid, block = _m.launch_config(n, per_thread=64)  # one warp per 2048 positions
        fn = _m.function("wavelet_matrix.cu", _m.level_kernel_name(np.dtype(tmp_dtype).itemsize))
        bufs = [first_out if first_out is not None else cp.empty(n, dtype=tmp_dtype),
                cp.empty(n, dtype=tmp_dtype) if L - stop_at > 1 else None]
        nxt = None
        for lv in range(L - 1, stop_at - 1, -1):
            dst = bufs[lv % 2] if bufs[1] is not None else bufs[0]
            has = nxt is not None
            fn((grid,), (block,), (*self._level_args(lv), nxt if has else dst, np.int32(has), dst))
            nxt = dst
        return nxt

    def decode(self, *, out=None, stream=None):
        """The whole sequence as a CuPy array of :attr:`dtype` (or into *out*)."""
        cp = _m._cupy()
        with self.device, _ctx(stream):
            if out is None:
                out = cp.empty(self._n, dtype=self._dtype)
            else:
                _check_out(out, self._n, (self._dtype,), "decode")
            if self._n and self.nlevels:
                res = self._passes(out, cp, self._dtype, 0)
                assert res is out
            elif self._n:
                out.fill(0)
        return out

    def decode_float(self, raw, fmt: str, *, lut=None, out=None, stream=None):
        """Decode exponent symbols and merge them with *raw* sign/mantissa bits,
        fused into the last (level-0) pass, so the exponent stream never goes
        to memory. See :func:`merge_float_bits` for the bit packing. Returns
        uint32 (fp32) or uint16 (bf16/fp16) bit patterns."""
        cp = _m._cupy()
        odt, ebits, mbits, rbits = _fmt(fmt)
        if self.nlevels > 8:
            raise ValueError("decode_float: exponent symbols must fit in 8 bits")
        n = self._n
        with self.device, _ctx(stream):
            raw = _raw_check(raw, n, rbits, "decode_float")
            lutd, has_lut = _lut_arg(lut, "decode_float")
            if out is None:
                out = cp.empty(n, dtype=odt)
            else:
                _check_out(out, n, (odt,), "decode_float")
            if n == 0:
                return out
            if self.nlevels == 0:
                return merge_float_bits(cp.zeros(n, cp.uint8), raw, fmt, lut=lut, out=out)
            nxt = self._passes(None, cp, cp.uint8, 1) if self.nlevels > 1 else None
            fused = _m.function("wavelet_matrix.cu", _m.float_kernel_names(fmt)[0])
            grid, block = _m.launch_config(n, per_thread=64)
            has = nxt is not None
            fused((grid,), (block,), (*self._level_args(0), nxt if has else raw, np.int32(has),
                                     lutd, np.int32(has_lut), raw, np.uint64(raw.size), out))
        return out

    # ---- point queries --------------------------------------------------------------
    def access(self, i, *, check: bool = True, stream=None):
        """Symbols at positions *i* (CuPy array of :attr:`dtype`, shape of *i*)."""
        cp = _m._cupy()
        with self.device, _ctx(stream):
            qd, shape = as_device_queries(i, "access")
            out = cp.empty(qd.size, dtype=self._dtype)
            if qd.size:
                bad = cp.full(1, _U64_MAX, dtype=cp.uint64)
                fn = _m.function("wavelet_matrix.cu", _m.access_kernel_name(self._dtype.itemsize))
                grid, block = _m.launch_config(qd.size)
                fn((grid,), (block,), (self._level_table(), np.uint32(self.nlevels),
                                       np.uint64(self._n), qd, np.uint64(qd.size), out, bad))
                if check:
                    _check_bad(bad, "access")
            return out.reshape(shape)

    def extract(self, start: int = 0, stop: int | None = None, *, out=None, stream=None):
        """Symbols ``[start, stop)`` into *out* or a new array (the whole range
        uses the bulk decode; a sub-range uses batch access)."""
        cp = _m._cupy()
        stop = self._n if stop is None else int(stop)
        start = int(start)
        if not 0 <= start <= stop <= self._n:
            raise IndexError(f"extract: range [{start}, {stop}) out of range")
        if start == 0 and stop == self._n:
            return self.decode(out=out, stream=stream)
        with self.device, _ctx(stream):
            res = self.access(cp.arange(start, stop, dtype=cp.uint64), stream=stream)
            if out is None:
                return res
            _check_out(out, stop - start, (self._dtype,), "extract")
            out[...] = res
            return out
