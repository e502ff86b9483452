"""WaveletMatrix: rank/select/range queries over integer sequences (C core:
wavelet_matrix.c)."""

from __future__ import annotations

import numpy as np

from . import _format
from ._core import WaveletError, as_index, check, ffi, lib
from ._wseq import (
    CODES,
    DTYPES,
    INDEX_KINDS,
    KIND_ARRAY,
    KIND_BYTES,
    KIND_STR,
    LevelBits,
    as_symbols,
    batch_args,
    check_out,
    dtype_max,
    index_code,
    index_from_meta,
    is_batch,
    norm_range,
    pos_scalar,
    sym_scalar,
    u64ptr,
    u64wptr,
)

__all__ = ["WaveletMatrix"]


class _SeqMixin:
    """Python-side behaviour shared by WaveletMatrix and WaveletTree."""

    __slots__ = ()

    def __len__(self) -> int:
        return self._n

    @property
    def dtype(self) -> np.dtype:
        """dtype of :meth:`extract` results (uint8 for bytes, uint32 for str)."""
        return self._dtype

    @property
    def max_symbol(self) -> int:
        """Largest symbol of the alphabet (0 for an empty sequence)."""
        return self._max_symbol

    @property
    def alphabet_size(self) -> int:
        """``max_symbol + 1``: symbols are in ``[0, alphabet_size)``."""
        return self._max_symbol + 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step == 1:
                return self.extract(start, max(start, stop))
            idx = np.arange(start, stop, step, dtype=np.uint64)
            return self.access(idx)
        if is_batch(i):
            return self.access(i)
        i = pos_scalar(i + len(self) if isinstance(i, int) and i < 0 else i, "index")
        return self.access(i)

    def __iter__(self):
        return iter(self.extract().tolist())

    def to_numpy(self) -> np.ndarray:
        """The whole sequence (same as ``extract()``)."""
        return self.extract()

    def tolist(self) -> list:
        return self.extract().tolist()

    def to_str(self) -> str:
        """The sequence as a ``str`` (code points); for any input kind."""
        return self.extract().astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")

    def decode(self):
        """The sequence in its input form: ``bytes``, ``str`` or a numpy array."""
        if self._kind == KIND_BYTES:
            return self.extract().tobytes()
        if self._kind == KIND_STR:
            return self.to_str()
        return self.extract()

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return (
            len(self) == len(other)
            and self._dtype == other._dtype
            and np.array_equal(self.extract(), other.extract())
        )

    __hash__ = None

    def _out_scalar(self, v: int):
        return int(v)

    def _result(self, res: np.ndarray, shape):
        return res.astype(self._dtype).reshape(shape)

    # ---- serialization -------------------------------------------------------
    def to_bytes(self, *, store_index: bool = True) -> bytes:
        """Serialize (docs/format.md). ``store_index=False`` leaves out the rank/select
        index of the level bits (format 1.3: about 0.5% (compact) or 4.7% (fast) of the bits
        smaller; the reader rebuilds it in O(n), so only the bits are zero-copy)."""
        return _format.pack(self._KIND, *self._to_parts(store_index))

    @classmethod
    def from_bytes(cls, data, *, max_bytes=None, verify=True):
        """Deserialize and validate; the result views *data* when it is aligned.

        Raises
        ------
        WaveletError
            (a ``ValueError``) if the data is truncated, corrupt or inconsistent.
        """
        return _format.from_buffer(data, expect=cls, max_bytes=max_bytes, verify=verify)

    def save(self, path, *, store_index: bool = True) -> None:
        """Write to *path* atomically (temporary file, then rename); *store_index* as for
        :meth:`to_bytes`."""
        _format.save(self, path, store_index=store_index)

    @classmethod
    def load(cls, path, *, mmap: bool = False, max_bytes=None, verify=True):
        """Read from *path*; ``mmap=True`` maps the file and copies nothing."""
        return _format.load(path, mmap=mmap, expect=cls, max_bytes=max_bytes, verify=verify)

    def __reduce_ex__(self, protocol):
        return _format.reduce(self, protocol)

    def _check_meta_dtype(self, code, kind, op):
        if code not in DTYPES or kind not in (KIND_ARRAY, KIND_BYTES, KIND_STR):
            raise WaveletError(f"{op}: bad dtype code or input kind")
        dt = np.dtype(DTYPES[code])
        if kind == KIND_BYTES and dt != np.uint8 or kind == KIND_STR and dt != np.uint32:
            raise WaveletError(f"{op}: input kind does not match the dtype")
        return dt


@_format.register_kind(2)
class WaveletMatrix(_SeqMixin):
    """A wavelet matrix over a sequence of non-negative integers.

    Parameters
    ----------
    seq : bytes, str, or 1-D array_like of non-negative integers
        ``bytes`` give uint8 symbols, ``str`` its code points (uint32); numpy
        arrays keep their dtype (any integer dtype up to 64 bits; signed
        arrays must not hold negative values).
    alphabet_size : int, optional
        Declared alphabet ``[0, alphabet_size)``; default ``max(seq) + 1``.

    Raises
    ------
    TypeError
        For non-integer input (floats, bools, objects).
    ValueError
        For negative symbols, or symbols outside the declared alphabet.

    Notes
    -----
    Claude, Navarro, Ordóñez, "The wavelet matrix", Information Systems 2015.
    ``L = bit_length(max_symbol)`` levels of ``n`` bits (each padded to 512)
    share one rank/select bitvector: about ``n L (1 + 0.04)`` bits. access,
    rank, quantile, count_less, range_freq and prev/next value cost ``O(L)``
    ranks; select ``O(L)`` selects; :meth:`extract` decodes level by level.
    Every query has a batch form (pass numpy arrays) computed in C with the
    GIL released. Queries are read-only and thread-safe.

    Examples
    --------
    >>> wm = WaveletMatrix([5, 4, 5, 5, 2, 1, 5, 6, 1, 3, 5, 0])
    >>> wm.rank(5, 9), wm.select(5, 3), wm.quantile(2, 12, 7)
    (4, 6, 5)
    """

    __slots__ = ("_n", "_nlevels", "_max_symbol", "_dtype", "_kind", "_lb", "_wm", "__weakref__")

    def __init__(self, seq=(), *, alphabet_size=None, index: str = "fast"):
        code = index_code(index, "WaveletMatrix")
        a, u, kind = as_symbols(seq, "WaveletMatrix", alphabet_size)
        n = int(u.size)
        mx = int(alphabet_size) - 1 if alphabet_size is not None else (int(u.max()) if n else 0)
        nlevels = max(1, mx.bit_length())
        sizes = ffi.new("uint64_t[2]")
        check(lib.wv_wm_layout(n, nlevels, sizes, sizes + 1), "WaveletMatrix")
        nbits = int(sizes[1])
        words = np.empty(nbits // 64, dtype=np.uint64)
        src = ffi.from_buffer(u) if n else ffi.NULL
        check(
            lib.wv_wm_build_bits(src, u.dtype.itemsize, n, nlevels, u64wptr(words), words.size),
            "WaveletMatrix",
        )
        lb = LevelBits.build(words, nbits, "WaveletMatrix", code)
        self._setup(n, nlevels, mx, a.dtype, kind, lb)

    def _setup(self, n, nlevels, mx, dtype, kind, lb) -> None:
        self._n, self._nlevels, self._max_symbol = n, nlevels, mx
        self._dtype, self._kind, self._lb = np.dtype(dtype), kind, lb
        wm = ffi.new("wv_wm_t *")
        st = lib.wv_wm_init(wm, lb.bv, n, nlevels)
        if st == lib.WV_ECORRUPT:
            raise WaveletError("WaveletMatrix: levels do not match the sequence (corrupt data)")
        check(st, "WaveletMatrix")
        self._wm = wm

    # ---- sizes ------------------------------------------------------------------
    @property
    def nlevels(self) -> int:
        """Number of bit levels (bit length of ``max_symbol``, at least 1)."""
        return self._nlevels

    @property
    def nbytes(self) -> int:
        """Bytes of all arrays (level bits and their rank/select index)."""
        return self._lb.nbytes

    def size_bits(self) -> int:
        out = ffi.new("uint64_t *")
        check(lib.wv_wm_size_bits(self._wm, out), "size_bits")
        return int(out[0])

    def space(self) -> dict:
        """Space report: total bytes, bits per symbol, bitvector overhead."""
        n = max(self._n, 1)
        bits = self.size_bits()
        return {
            "n": self._n,
            "nlevels": self._nlevels,
            "level_bits": int(self._lb.nbits),
            "total_bytes": self.nbytes,
            "bits_per_symbol": bits / n,
            "index_overhead_pct": 100.0 * (bits - self._lb.nbits) / max(self._lb.nbits, 1),
        }

    def __repr__(self) -> str:
        head = self.extract(0, min(self._n, 10)).tolist()
        more = ", ..." if self._n > 10 else ""
        return (
            f"WaveletMatrix(n={self._n}, dtype={self._dtype}, alphabet_size={self.alphabet_size}, "
            f"nlevels={self._nlevels}, seq=[{', '.join(map(str, head))}{more}])"
        )

    # ---- point queries --------------------------------------------------------------
    def access(self, i):
        """Symbol at position ``i`` (int -> int; integer array -> array of ``dtype``).

        Raises
        ------
        IndexError
            If ``i < 0`` or ``i >= len``.
        """
        if not is_batch(i):
            i = pos_scalar(i, "access")
            out = ffi.new("uint64_t *")
            check(lib.wv_wm_access(self._wm, i, out), "access")
            return int(out[0])
        (q,), shape = batch_args([(i, "pos")], "access")
        res = np.empty(q.size, dtype=np.uint64)
        bad = ffi.new("size_t *")
        st = lib.wv_wm_access_batch(self._wm, u64ptr(q), q.size, u64wptr(res), bad)
        check(st, "access", bad=bad[0])
        return self._result(res, shape)

    def rank(self, c, i):
        """Occurrences of symbol ``c`` in ``[0, i)``, ``0 <= i <= len``.

        ``c`` and ``i`` may be ints or arrays (broadcast). Symbols that do not
        occur have rank 0.

        Raises
        ------
        IndexError
            If ``i`` is negative or greater than ``len``.
        ValueError
            If ``c`` is negative or not below ``2**64``.
        """
        if not is_batch(c, i):
            c, i = sym_scalar(c, "rank"), pos_scalar(i, "rank")
            out = ffi.new("uint64_t *")
            check(lib.wv_wm_rank(self._wm, c, i, out), "rank")
            return int(out[0])
        (cc, q), shape = batch_args([(c, "sym"), (i, "pos")], "rank")
        res = np.empty(q.size, dtype=np.uint64)
        bad = ffi.new("size_t *")
        st = lib.wv_wm_rank_batch(self._wm, u64ptr(cc), u64ptr(q), q.size, u64wptr(res), bad)
        check(st, "rank", bad=bad[0])
        return res.reshape(shape)

    def select(self, c, k):
        """Position of the ``k``-th (0-based) occurrence of ``c``.

        Raises
        ------
        IndexError
            If ``c`` occurs ``k`` times or fewer (or ``k < 0``).
        """
        if not is_batch(c, k):
            c, k = sym_scalar(c, "select"), pos_scalar(k, "select")
            out = ffi.new("uint64_t *")
            check(lib.wv_wm_select(self._wm, c, k, out), "select", what="k")
            return int(out[0])
        (cc, q), shape = batch_args([(c, "sym"), (k, "pos")], "select")
        res = np.empty(q.size, dtype=np.uint64)
        bad = ffi.new("size_t *")
        st = lib.wv_wm_select_batch(self._wm, u64ptr(cc), u64ptr(q), q.size, u64wptr(res), bad)
        check(st, "select", bad=bad[0], what="k")
        return res.reshape(shape)

    # ---- range queries ------------------------------------------------------------------
    def _range_batch(self, fn, specs, op, what="range"):
        arrs, shape = batch_args(specs, op)
        m = arrs[0].size
        res = np.empty(m, dtype=np.uint64)
        bad = ffi.new("size_t *")
        st = fn(self._wm, *[u64ptr(a) for a in arrs], m, u64wptr(res), bad)
        check(st, op, bad=bad[0], what=what)
        return res.reshape(shape)

    def quantile(self, l, r, k):
        """``k``-th smallest (0-based) symbol in ``[l, r)``.

        Raises
        ------
        IndexError
            If the range is not inside ``[0, len]`` or ``k >= r - l``.
        """
        if not is_batch(l, r, k):
            l, r = norm_range(l, r, self._n, "quantile")
            k = pos_scalar(k, "quantile")
            out = ffi.new("uint64_t *")
            check(lib.wv_wm_quantile(self._wm, l, r, k, out), "quantile", what="k or range")
            return int(out[0])
        res = self._range_batch(
            lib.wv_wm_quantile_batch, [(l, "pos"), (r, "pos"), (k, "pos")], "quantile", "k or range"
        )
        return res.astype(self._dtype)

    def count_less(self, l, r, x):
        """Number of symbols ``< x`` in ``[l, r)`` (any ``x >= 0``)."""
        if not is_batch(l, r, x):
            l, r = norm_range(l, r, self._n, "count_less")
            x = sym_scalar(x, "count_less")
            out = ffi.new("uint64_t *")
            check(lib.wv_wm_count_less(self._wm, l, r, x, out), "count_less")
            return int(out[0])
        return self._range_batch(
            lib.wv_wm_count_less_batch, [(l, "pos"), (r, "pos"), (x, "sym")], "count_less"
        )

    def _hi(self, hi, op: str) -> tuple[int, bool]:
        """An exclusive upper symbol bound in ``[0, 2**64]`` (None: 2**64) -> the bound C
        takes (below 2**64) and whether the symbol ``2**64 - 1`` is to be counted too."""
        h = 1 << 64 if hi is None else as_index(hi, op)
        if not 0 <= h <= 1 << 64:
            raise ValueError(f"{op}: hi {h} is outside [0, 2**64]")
        if h == 1 << 64:
            return h - 1, self._max_symbol == h - 1
        return h, False

    def _count_max(self, l: int, r: int) -> int:
        """Occurrences of the symbol ``2**64 - 1`` in ``[l, r)``."""
        c = (1 << 64) - 1
        return int(self.rank(c, r)) - int(self.rank(c, l))

    def range_freq(self, l, r, lo, hi):
        """Number of symbols ``c`` with ``lo <= c < hi`` in ``[l, r)`` (scalar *hi* up to
        ``2**64``; batch arguments are uint64, so below it)."""
        if not is_batch(l, r, lo, hi):
            l, r = norm_range(l, r, self._n, "range_freq")
            lo = sym_scalar(lo, "range_freq")
            hi, top = self._hi(hi, "range_freq")
            out = ffi.new("uint64_t *")
            check(lib.wv_wm_range_freq(self._wm, l, r, lo, hi, out), "range_freq")
            return int(out[0]) + (self._count_max(l, r) if top else 0)
        return self._range_batch(
            lib.wv_wm_range_freq_batch,
            [(l, "pos"), (r, "pos"), (lo, "sym"), (hi, "sym")],
            "range_freq",
        )

    def _prev_next(self, l, r, x, nxt: bool):
        op = "next_value" if nxt else "prev_value"
        if not is_batch(l, r, x):
            l, r = norm_range(l, r, self._n, op)
            x = sym_scalar(x, op)
            out = ffi.new("uint64_t *")
            fn = lib.wv_wm_next_value if nxt else lib.wv_wm_prev_value
            st = fn(self._wm, l, r, x, out)
            if st == lib.WV_ENOTFOUND:
                return None
            check(st, op)
            return int(out[0])
        (la, ra, xa), shape = batch_args([(l, "pos"), (r, "pos"), (x, "sym")], op)
        res = np.empty(la.size, dtype=np.uint64)
        found = np.empty(la.size, dtype=np.uint8)
        bad = ffi.new("size_t *")
        fn = lib.wv_wm_next_value_batch if nxt else lib.wv_wm_prev_value_batch
        st = fn(self._wm, u64ptr(la), u64ptr(ra), u64ptr(xa), la.size, u64wptr(res),
                ffi.from_buffer("uint8_t[]", found, require_writable=True), bad)
        check(st, op, bad=bad[0], what="range")
        return res.astype(self._dtype).reshape(shape), found.astype(bool).reshape(shape)

    def prev_value(self, l, r, x):
        """Largest symbol ``< x`` in ``[l, r)``, or ``None``.

        With array arguments returns ``(values, found)``: values (0 where not
        found) and a bool mask.
        """
        return self._prev_next(l, r, x, False)

    def next_value(self, l, r, x):
        """Smallest symbol ``>= x`` in ``[l, r)``, or ``None`` (arrays: see prev_value)."""
        return self._prev_next(l, r, x, True)

    def range_list(self, l=0, r=None, lo=0, hi=None):
        """Distinct symbols ``c`` with ``lo <= c < hi`` in ``[l, r)``, with counts (*hi* up
        to ``2**64``; None: no upper bound).

        Returns
        -------
        (values, counts) : tuple of ndarray
            ``values`` ascending (dtype of the sequence), ``counts`` uint64.
        """
        l, r = norm_range(l, r, self._n, "range_list")
        lo = sym_scalar(lo, "range_list")
        hi, top = self._hi(hi, "range_list")
        vals, cnts = self._range_list(l, r, lo, hi)
        m = self._count_max(l, r) if top else 0
        if m:  # the symbol 2**64 - 1, past any uint64 exclusive bound C can take
            vals = np.append(vals, np.uint64(hi))
            cnts = np.append(cnts, np.uint64(m))
        return vals.astype(self._dtype), cnts

    def _range_list(self, l, r, lo, hi):
        cap = max(1, min(r - l, max(hi - lo, 0), 4096))
        cnt = ffi.new("uint64_t *")
        while True:
            vals = np.empty(cap, dtype=np.uint64)
            cnts = np.empty(cap, dtype=np.uint64)
            st = lib.wv_wm_range_list(
                self._wm, l, r, lo, hi, u64wptr(vals), u64wptr(cnts), cap, cnt)
            check(st, "range_list")
            if cnt[0] <= cap:
                m = int(cnt[0])
                return vals[:m], cnts[:m]
            cap = int(cnt[0])

    def top_k(self, l=0, r=None, k=1):
        """The ``k`` most frequent symbols in ``[l, r)`` (ties: smaller symbol first).

        Returns
        -------
        (values, counts) : tuple of ndarray
        """
        k = pos_scalar(k, "top_k")
        vals, cnts = self.range_list(l, r)
        order = np.lexsort((vals, -cnts.astype(np.int64)))[:k]
        return vals[order], cnts[order]

    # ---- bulk ---------------------------------------------------------------------------------
    def extract(self, l=0, r=None, out=None):
        """Symbols ``[l, r)`` as a numpy array of ``dtype`` (written into *out* if given).

        Decodes level by level (sequential merges), not ``r - l`` accesses.

        Raises
        ------
        IndexError
            If the range is not inside ``[0, len]``.
        TypeError, ValueError
            If *out* has the wrong dtype, shape or flags.
        """
        l, r = norm_range(l, r, self._n, "extract")
        m = r - l
        out = check_out(out, self._dtype, m, "extract")
        if m == 0:
            return out
        ne = ffi.new("uint64_t *")
        check(lib.wv_wm_extract_ws(self._wm, l, r, ne), "extract")
        ws = np.empty(int(ne[0]) * 8, dtype=np.uint64)
        tmp = np.empty(m, dtype=self._dtype)
        st = lib.wv_wm_extract(self._wm, l, r, ffi.from_buffer(out, require_writable=True),
                               self._dtype.itemsize, ffi.from_buffer(tmp, require_writable=True),
                               u64wptr(ws), int(ne[0]))
        check(st, "extract")
        return out

    # ---- serialization -------------------------------------------------------------------
    def to_device(self, device=None):
        """Upload to a GPU: a :class:`wavelet.cuda.DeviceWaveletMatrix` over the same
        serialized arrays (no re-encoding), with batch access and bulk extract/decode
        (needs CuPy and a CUDA device)."""
        from ._gpu_wavelet import DeviceWaveletMatrix

        return DeviceWaveletMatrix.from_host(self, device)

    @property
    def index(self) -> str:
        """The rank/select index kind of the level bits, ``"fast"`` or ``"compact"``."""
        return INDEX_KINDS[self._lb.index]

    def _to_parts(self, store_index: bool = True):
        meta = [self._n, self._nlevels, self._max_symbol, CODES[self._dtype], self._kind,
                int(self._lb.nbits), int(self._lb.ones)]
        return meta + self._lb.meta_tail(), self._lb.sections(store_index)

    def _device_parts(self):
        """``(meta, sections)`` with the fast index, which the GPU kernels read."""
        meta, _ = self._to_parts()
        return meta[:7], self._lb.fast().sections()

    @classmethod
    def _from_parts(cls, meta, sections):
        op = "WaveletMatrix"
        index = index_from_meta(meta, 7, op)
        n, nlevels, mx, code, kind, nbits, ones = (int(x) for x in meta[:7])
        if set(sections) not in ({"WRDS", "BLKS", "SUPR", "SEL1", "SEL0"}, {"WRDS"}):
            raise WaveletError(f"{op}: unexpected sections {tuple(sections)}")
        self = cls.__new__(cls)
        dt = self._check_meta_dtype(code, kind, op)
        bits = 8 * dt.itemsize - (dt.kind == "i")
        if not 1 <= nlevels <= bits or mx > dtype_max(dt) or mx >> nlevels:
            raise WaveletError(f"{op}: bad level count or max symbol")
        if n > 1 << 50:
            raise WaveletError(f"{op}: bad length")
        lb = LevelBits.from_sections(sections, nbits, ones, op, index)
        self._setup(n, nlevels, mx, dt, kind, lb)
        return self
