"""DeviceWaveletMatrix: GPU bulk decode, batch access/rank/select and range
extract of a wavelet matrix, and its decode fused with float reassembly in
dnn_adapter's FloatCodec layout (kernels in cuda/wavelet_matrix.cu).

Private module; public names are re-exported by :mod:`wavelet.cuda`.
CuPy is imported on first use only.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ._gpu_bitvector import DeviceBitVector, _check_bad, _check_out, as_device_queries
from ._gpu_fields import as_device_out, check_bad, check_parts, float_spec
from .cuda import _module as _m

__all__ = ["DeviceWaveletMatrix", "FLOAT_FORMATS"]

_U64_MAX = (1 << 64) - 1

#: IEEE float formats: name -> (word dtype, exponent bits, mantissa bits). The
#: device float kernels take any split (see :func:`wavelet.cuda.merge_float_fields`).
FLOAT_FORMATS = {k: (v[0], v[1], v[2]) for k, v in _m.FLOAT_FORMATS.items()}


def _sym_dtype(nlevels: int):
    for bits, dt in ((8, np.uint8), (16, np.uint16), (32, np.uint32), (64, np.uint64)):
        if nlevels <= bits:
            return np.dtype(dt)
    raise ValueError(f"wavelet matrix with {nlevels} levels: at most 64 supported")


def _ctx(stream):
    return stream if stream is not None else contextlib.nullcontext()


class DeviceWaveletMatrix:
    """A wavelet matrix in GPU memory: bulk decode, fused float decode, batch access.

    Level ``l`` (0 = most significant bit) is bits ``[off_l, off_l + n)`` of a
    :class:`DeviceBitVector`; levels may share one bitvector (levels
    concatenated, ``off_l = l * n``) or each have their own (``off_l = 0``), so
    the device arrays are exactly the host structure's sections.

    Build with :meth:`from_levels` (one host/device bitvector per level) or
    :meth:`from_concatenated` (one bitvector of ``L * n`` bits).
    """

    def __init__(self, n: int, levels, zeros, device_id: int, out_dtype=None):
        self._n = int(n)
        self._levels = list(levels)  # [(DeviceBitVector, off)]
        self._zeros = [int(z) for z in zeros]
        self._device = device_id
        if len(self._zeros) != len(self._levels):
            raise ValueError("DeviceWaveletMatrix: one zero count per level")
        for bv, off in self._levels:
            if off + self._n > len(bv):
                raise ValueError("DeviceWaveletMatrix: level range past its bitvector")
        self._dtype = _sym_dtype(max(1, len(self._levels)))  # internal symbol type
        self._odt = np.dtype(out_dtype) if out_dtype is not None else self._dtype
        if self._odt.kind not in "iu" or self._odt.itemsize * 8 < len(self._levels):
            raise ValueError(f"DeviceWaveletMatrix: result dtype {self._odt} cannot hold "
                             f"{len(self._levels)}-bit symbols")
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
        Results have the host matrix's dtype (signed dtypes map back as on the
        host: the stored symbols are non-negative)."""
        from ._gpu_bitvector import upload_sections

        cp = _m._cupy()
        meta, secs = wm._device_parts()
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
            return cls(n, [(db, o) for o in offs], zeros, dev.id, out_dtype=wm.dtype)

    # ---- properties --------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    @property
    def nlevels(self) -> int:
        return len(self._levels)

    @property
    def dtype(self):
        """dtype of decode/access/extract results: the host matrix's dtype
        (:meth:`from_host`), else the smallest unsigned type holding L bits."""
        return self._odt

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
        """Per-level descriptor table of the query kernels (u64[L][10], WV_LV in
        wavelet_matrix.cu): words, blocks, super, nwords, off, zeros, rank1(off),
        sel1, sel0, nblocks."""
        cp = _m._cupy()
        if self._table is None:
            rows = []
            for lv, (bv, off) in enumerate(self._levels):
                a = bv._a
                r1 = int(bv.rank1(cp.asarray([off], dtype=cp.uint64)).get()[0])
                rows.append([a["WRDS"].data.ptr, a["BLKS"].data.ptr, a["SUPR"].data.ptr,
                             a["WRDS"].size, off, self._zeros[lv], r1, a["SEL1"].data.ptr,
                             a["SEL0"].data.ptr, a["BLKS"].size])
            self._table = cp.asarray(np.array(rows, dtype=np.uint64).reshape(-1, 10).reshape(-1))
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
        """The whole sequence as a CuPy array of :attr:`dtype` (or into *out*).
        The passes run in the narrowest unsigned type holding the symbols; a
        wider result dtype costs one extra widening pass."""
        cp = _m._cupy()
        with self.device, _ctx(stream):
            if out is None:
                out = cp.empty(self._n, dtype=self._odt)
            else:
                _check_out(out, self._n, (self._odt,), "decode")
            if self._n and self.nlevels:
                if self._odt.itemsize == self._dtype.itemsize:
                    res = self._passes(out.view(self._dtype), cp, self._dtype, 0)
                    assert res.data.ptr == out.data.ptr
                else:
                    tmp = self._passes(None, cp, self._dtype, 0)
                    out[...] = tmp.view(self._dtype)
            elif self._n:
                out.fill(0)
        return out

    def decode_float(self, table, exp_bits: int, mant_bits: int, planes, top=None, *,
                     out=None, check: bool = True, stream=None):
        """Decode exponent codes (the matrix's symbols) and rebuild float words in
        dnn_adapter's FloatCodec layout, fused into the last (level-0) pass so the
        codes never go to memory. Parts and result as for
        :func:`wavelet.cuda.merge_float_fields` (*out* may be a DLPack integer
        tensor, written in place). Needs at most 16 levels (codes < 65536).

        Raises
        ------
        WaveletError
            A code outside *table* (with ``check=True``), or a table entry wider
            than *exp_bits*.
        """
        cp = _m._cupy()
        op = "decode_float"
        word, nplanes, rem = float_spec(exp_bits, mant_bits, op)
        if self.nlevels > 16:
            raise ValueError(f"{op}: exponent codes must fit in 16 bits (nlevels <= 16)")
        n = self._n
        code_dt = np.dtype(np.uint8 if self.nlevels <= 8 else np.uint16)
        with self.device, _ctx(stream):
            table, planes, top, _ = check_parts(table, exp_bits, planes, top, n, nplanes, rem, op)
            res = as_device_out(out, n, word, op)
            if n == 0:
                return out if out is not None else res
            if self.nlevels == 0:  # no levels: every code is 0
                from ._gpu_fields import merge_float_fields

                return merge_float_fields(cp.zeros(n, cp.uint8), table, exp_bits, mant_bits,
                                          planes[: nplanes * n], top if rem else None,
                                          out if out is not None else res, check=check)
            bad = cp.full(1, _U64_MAX, dtype=cp.uint64)
            nxt = self._passes(None, cp, code_dt, 1) if self.nlevels > 1 else None
            fused = _m.function("wavelet_matrix.cu",
                                _m.wm_float_kernel_name(code_dt.itemsize, word.itemsize))
            grid, block = _m.launch_config(n, per_thread=64)
            has = nxt is not None
            fused((grid,), (block,), (*self._level_args(0), nxt if has else planes,
                                      np.int32(has), table, np.uint64(table.size),
                                      np.uint32(mant_bits), planes, np.uint32(nplanes), top,
                                      np.uint32(rem), res, bad))
            if check:
                check_bad(bad, op)
        return out if out is not None else res

    # ---- point queries --------------------------------------------------------------
    def access(self, i, *, check: bool = True, stream=None):
        """Symbols at positions *i* (CuPy array of :attr:`dtype`, shape of *i*)."""
        cp = _m._cupy()
        udt = np.dtype(f"u{self._odt.itemsize}")
        with self.device, _ctx(stream):
            qd, shape = as_device_queries(i, "access")
            out = cp.empty(qd.size, dtype=udt)
            if qd.size:
                bad = cp.full(1, _U64_MAX, dtype=cp.uint64)
                fn = _m.function("wavelet_matrix.cu", _m.access_kernel_name(udt.itemsize))
                grid, block = _m.launch_config(qd.size)
                fn((grid,), (block,), (self._level_table(), np.uint32(self.nlevels),
                                       np.uint64(self._n), qd, np.uint64(qd.size), out, bad))
                if check:
                    _check_bad(bad, "access")
            return out.view(self._odt).reshape(shape)

    def _sym_queries(self, c, i, op):
        cp = _m._cupy()
        cc = c if isinstance(c, cp.ndarray) else cp.asarray(np.asarray(c))
        qi = i if isinstance(i, cp.ndarray) else cp.asarray(np.asarray(i))
        for a, what in ((cc, "symbols"), (qi, "positions")):
            if a.size and a.dtype.kind not in "iu":
                raise TypeError(f"{op}: {what} must be integers, got dtype {a.dtype}")
        if cc.size and cc.dtype.kind == "i" and bool((cc < 0).any()):
            raise ValueError(f"{op}: negative symbol")
        cc, qi = cp.broadcast_arrays(cc, qi)
        shape = cc.shape
        flat = [cp.ascontiguousarray(x.ravel()).astype(cp.uint64, copy=False) for x in (cc, qi)]
        return flat[0], flat[1], shape

    def _sym_query(self, op, kernel, c, i, check, stream):
        cp = _m._cupy()
        with self.device, _ctx(stream):
            cc, q, shape = self._sym_queries(c, i, op)
            out = cp.empty(q.size, dtype=cp.uint64)
            if q.size:
                bad = cp.full(1, _U64_MAX, dtype=cp.uint64)
                grid, block = _m.launch_config(q.size)
                kernel()(
                    (grid,), (block,), (self._level_table(), np.uint32(self.nlevels),
                                        np.uint64(self._n), cc, q, np.uint64(q.size), out, bad))
                if check:
                    _check_bad(bad, op)
            return out.reshape(shape)

    def rank(self, c, i, *, check: bool = True, stream=None):
        """Occurrences of ``c`` in ``[0, i)`` (arrays broadcast; uint64 CuPy array).
        Symbols that cannot occur have rank 0; ``i > len`` raises IndexError."""
        return self._sym_query("rank", lambda: _m.function("wavelet_matrix.cu", "wv_wm_rank_k"),
                               c, i, check, stream)

    def select(self, c, k, *, check: bool = True, stream=None):
        """Position of the ``k``-th (0-based) occurrence of ``c`` (uint64 CuPy
        array); IndexError if ``c`` occurs ``k`` times or fewer."""
        return self._sym_query("select",
                               lambda: _m.function("wavelet_matrix.cu", "wv_wm_select_k"),
                               c, k, check, stream)

    def extract(self, start: int = 0, stop: int | None = None, *, out=None, stream=None):
        """Symbols ``[start, stop)`` into *out* or a new array of :attr:`dtype`.

        The whole sequence uses the bulk decode (L bandwidth-bound passes over n);
        so does a range of at least n/4 symbols (decoded, then sliced). Shorter
        ranges run the range kernel: one thread per position walking the levels
        top-down, positions generated on the device (no index array); neighbouring
        threads share their rank lookups in cache. A bottom-up pass restricted to
        the range would need the range's nodes per level (up to 2^level of them),
        which a wavelet matrix does not keep."""
        cp = _m._cupy()
        stop = self._n if stop is None else int(stop)
        start = int(start)
        if not 0 <= start <= stop <= self._n:
            raise IndexError(f"extract: range [{start}, {stop}) out of range")
        m = stop - start
        if start == 0 and stop == self._n:
            return self.decode(out=out, stream=stream)
        with self.device, _ctx(stream):
            if out is None:
                out = cp.empty(m, dtype=self._odt)
            else:
                _check_out(out, m, (self._odt,), "extract")
            if m and 4 * m >= self._n:
                out[...] = self.decode()[start:stop]
            elif m:
                udt = np.dtype(f"u{self._odt.itemsize}")
                fn = _m.function("wavelet_matrix.cu", _m.wm_extract_kernel_name(udt.itemsize))
                grid, block = _m.launch_config(m)
                fn((grid,), (block,), (self._level_table(), np.uint32(self.nlevels),
                                       np.uint64(start), np.uint64(m), out.view(udt)))
            return out
