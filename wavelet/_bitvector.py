"""BitVector: rank/select over a static bit sequence (C core: bitvector.c)."""

from __future__ import annotations

import numpy as np

from . import _format
from ._core import (
    WaveletError,
    aligned_copy,
    aligned_empty,
    as_index,
    as_index_array,
    buf,
    check,
    ffi,
    is_scalar,
    lib,
    wbuf,
)
from ._wseq import INDEX_KINDS, index_code, index_from_meta

__all__ = ["BitVector"]


def _pack_bits(bits) -> tuple[np.ndarray, int]:
    """Anything bit-like -> (uint64 words, nbits)."""
    if isinstance(bits, bytes | bytearray | memoryview):
        b = np.frombuffer(bytes(bits), dtype=np.uint8)
        nbits = 8 * b.size
        pad = (-b.size) % 8
        w = np.concatenate([b, np.zeros(pad, np.uint8)]).view("<u8")
        return aligned_copy(w), nbits
    if isinstance(bits, str):
        raise TypeError("BitVector: a str is not a bit sequence (use bytes, or a list of 0/1)")
    a = np.asarray(bits if isinstance(bits, np.ndarray) else list(bits))
    if a.ndim != 1:
        raise ValueError(f"BitVector: expected a 1-D sequence of bits, got shape {a.shape}")
    if a.size == 0:
        return np.zeros(0, dtype=np.uint64), 0
    if a.dtype != np.bool_:
        if not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"BitVector: bits must be bool or 0/1 integers, got dtype {a.dtype}")
        if a.min() < 0 or a.max() > 1:
            raise ValueError("BitVector: integer bits must be 0 or 1")
    u8 = np.ascontiguousarray(a, dtype=np.uint8)
    nbits = u8.size
    words = aligned_empty((nbits + 63) // 64)
    check(
        lib.wv_bv_pack_bools(ffi.from_buffer("uint8_t[]", u8), nbits, wbuf(words)),
        "BitVector",
    )
    return words, nbits


@_format.register_kind(1)
class BitVector:
    """A static bit sequence with constant-time rank and fast select.

    Parameters
    ----------
    bits : array_like of bool or 0/1 ints, bytes, or iterable of bits
        ``bytes``/``bytearray`` are read as packed bits, least significant bit
        first (bit ``i`` is ``(b[i // 8] >> (i % 8)) & 1``). Use
        :meth:`from_words` for packed ``uint64`` words.

    index : {"fast", "compact"}, keyword-only
        The rank/select index. ``"fast"`` (default): interleaved counters, one 64-bit
        entry per 2048 bits (3.125%), select samples every 4096th one and zero; about
        4.7% of ``n`` in all, and one 64-byte line of bits per rank. ``"compact"``: one
        entry per 16384 bits and samples every 65536th; about 0.49% of ``n``, and a rank
        popcounts up to 63 words instead of 7 (a few times slower). Choose it when the
        bits are mostly read in bulk or the index's share of the stored size matters.

    Notes
    -----
    Queries are read-only and thread-safe; the batch forms run in C with the GIL
    released. Both index kinds give the same answers.
    """

    __slots__ = ("_words", "_blocks", "_super", "_sel1", "_sel0", "_bv", "_keep", "__weakref__")

    def __init__(self, bits=(), *, index: str = "fast"):
        code = index_code(index, "BitVector")
        words, nbits = _pack_bits(bits)
        self._build(words, nbits, code)

    # ---- construction -----------------------------------------------------
    @classmethod
    def from_words(cls, words, nbits: int | None = None, *, index: str = "fast") -> BitVector:
        """Build from packed little-endian ``uint64`` words (copied).

        Bits past ``nbits`` in the last word must be zero. *index* as for the constructor.
        """
        code = index_code(index, "BitVector.from_words")
        w = np.asarray(words)
        if w.dtype != np.uint64:
            raise TypeError(f"BitVector.from_words: expected dtype uint64, got {w.dtype}")
        if w.ndim != 1:
            raise ValueError("BitVector.from_words: expected a 1-D array")
        if nbits is None:
            nbits = 64 * w.size
        nbits = as_index(nbits, "nbits")
        if nbits < 0 or (nbits + 63) // 64 != w.size:
            raise ValueError(f"BitVector.from_words: {w.size} words cannot hold {nbits} bits")
        self = cls.__new__(cls)
        self._build(aligned_copy(w), nbits, code)
        return self

    def _build(self, words: np.ndarray, nbits: int, index: int = 0) -> None:
        ones = ffi.new("uint64_t *")
        st = lib.wv_bv_count(buf(words), nbits, ones)
        if st == lib.WV_ECORRUPT:
            raise ValueError("BitVector: bits past nbits in the last word must be zero")
        check(st, "BitVector")
        sizes = ffi.new("uint64_t[5]")
        check(
            lib.wv_bv_layout(
                nbits, ones[0], index, sizes + 0, sizes + 1, sizes + 2, sizes + 3, sizes + 4
            ),
            "BitVector",
        )
        arrs = [aligned_empty(int(sizes[k])) for k in range(1, 5)]
        self._attach(words, *arrs, nbits, ones[0], index)
        check(lib.wv_bv_build(self._bv, *[wbuf(a) for a in arrs]), "BitVector")
        for a in (self._words, *arrs):
            a.flags.writeable = False

    def _attach(self, words, blocks, sup, sel1, sel0, nbits, ones, index=0) -> None:
        self._words, self._blocks, self._super, self._sel1, self._sel0 = (
            words,
            blocks,
            sup,
            sel1,
            sel0,
        )
        bv = ffi.new("wv_bv_t *")
        keep = [buf(a) for a in (words, blocks, sup, sel1, sel0)]
        bv.words, bv.blocks, bv.super, bv.sel1, bv.sel0 = keep
        bv.nbits, bv.ones, bv.index = nbits, ones, index
        bv.nwords, bv.nblocks, bv.nsuper = words.size, blocks.size, sup.size
        bv.nsel1, bv.nsel0 = sel1.size, sel0.size
        self._bv, self._keep = bv, keep

    # ---- basic properties -------------------------------------------------
    def __len__(self) -> int:
        return int(self._bv.nbits)

    @property
    def index(self) -> str:
        """The rank/select index kind, ``"fast"`` or ``"compact"``."""
        return INDEX_KINDS[int(self._bv.index)]

    @property
    def words(self) -> np.ndarray:
        """The packed bits (read-only uint64 view, little-endian bit order)."""
        return self._words

    def count(self, bit: int = 1) -> int:
        """Number of ones (or zeros with ``bit=0``)."""
        ones = int(self._bv.ones)
        if bit not in (0, 1):
            raise ValueError("count: bit must be 0 or 1")
        return ones if bit else len(self) - ones

    @property
    def nbytes(self) -> int:
        """Bytes used by the bits plus the rank/select index."""
        return sum(
            a.nbytes for a in (self._words, self._blocks, self._super, self._sel1, self._sel0)
        )

    def size_bits(self) -> int:
        out = ffi.new("uint64_t *")
        check(lib.wv_bv_size_bits(self._bv, out), "size_bits")
        return int(out[0])

    def space(self) -> dict:
        """Space report: bytes of bits, rank index, select samples; overhead in % of n."""
        n = max(len(self), 1)
        rank = self._blocks.nbytes + self._super.nbytes
        sel = self._sel1.nbytes + self._sel0.nbytes
        return {
            "nbits": len(self),
            "bits_bytes": self._words.nbytes,
            "rank_bytes": rank,
            "select_bytes": sel,
            "total_bytes": self.nbytes,
            "rank_overhead_pct": 100.0 * 8 * rank / n,
            "select_overhead_pct": 100.0 * 8 * sel / n,
            "overhead_pct": 100.0 * 8 * (rank + sel) / n,
        }

    # ---- queries ------------------------------------------------------------
    def access(self, i):
        """Bit at position ``i`` (int -> int; integer array -> uint8 array)."""
        if is_scalar(i):
            i = as_index(i, "access")
            out = ffi.new("int *")
            if i < 0:
                raise IndexError("access: index out of range")
            check(lib.wv_bv_access(self._bv, i, out), "access")
            return int(out[0])
        q, shape = as_index_array(i, "access")
        res = np.empty(q.size, dtype=np.uint8)
        bad = ffi.new("size_t *")
        st = lib.wv_bv_access_batch(
            self._bv, buf(q), q.size, ffi.from_buffer("uint8_t[]", res, require_writable=True), bad
        )
        check(st, "access", bad=bad[0])
        return res.reshape(shape)

    def __getitem__(self, i):
        if isinstance(i, slice):
            idx = np.arange(len(self), dtype=np.uint64)[i]
            return self.access(idx).astype(bool)
        if is_scalar(i):
            i = as_index(i)
            if i < 0:
                i += len(self)
            if i < 0:
                raise IndexError("BitVector index out of range")
            return self.access(i)
        return self.access(i)

    def __iter__(self):
        return iter(self.to_numpy().tolist())

    def to_numpy(self) -> np.ndarray:
        """All bits as a numpy bool array."""
        u8 = self._words.view(np.uint8) if self._words.size else np.zeros(0, np.uint8)
        if not np.little_endian:  # pragma: no cover
            u8 = self._words.astype("<u8").view(np.uint8)
        return np.unpackbits(u8, bitorder="little", count=len(self)).astype(bool)

    def _rank(self, i, one: int, fn, bfn, name):
        if is_scalar(i):
            i = as_index(i, name)
            if i < 0:
                raise IndexError(f"{name}: index out of range")
            out = ffi.new("uint64_t *")
            check(fn(self._bv, i, out), name)
            return int(out[0])
        q, shape = as_index_array(i, name)
        res = np.empty(q.size, dtype=np.uint64)
        bad = ffi.new("size_t *")
        check(bfn(self._bv, buf(q), q.size, wbuf(res), bad), name, bad=bad[0])
        return res.reshape(shape)

    def rank1(self, i):
        """Number of ones in ``[0, i)``, for ``0 <= i <= len``. Int or integer array."""
        return self._rank(i, 1, lib.wv_bv_rank1, lib.wv_bv_rank1_batch, "rank1")

    def rank0(self, i):
        """Number of zeros in ``[0, i)``, for ``0 <= i <= len``."""
        return self._rank(i, 0, lib.wv_bv_rank0, lib.wv_bv_rank0_batch, "rank0")

    def rank(self, bit: int, i):
        if bit not in (0, 1):
            raise ValueError("rank: bit must be 0 or 1")
        return self.rank1(i) if bit else self.rank0(i)

    def select1(self, k):
        """Position of the ``k``-th one (0-based); IndexError if ``k >= count(1)``."""
        return self._rank(k, 1, lib.wv_bv_select1, lib.wv_bv_select1_batch, "select1")

    def select0(self, k):
        """Position of the ``k``-th zero (0-based); IndexError if ``k >= count(0)``."""
        return self._rank(k, 0, lib.wv_bv_select0, lib.wv_bv_select0_batch, "select0")

    def select(self, bit: int, k):
        if bit not in (0, 1):
            raise ValueError("select: bit must be 0 or 1")
        return self.select1(k) if bit else self.select0(k)

    # ---- comparison, repr ---------------------------------------------------
    def __eq__(self, other):
        if not isinstance(other, BitVector):
            return NotImplemented
        return len(self) == len(other) and np.array_equal(self._words, other._words)

    __hash__ = None

    def __repr__(self) -> str:
        n = len(self)
        head = "".join("1" if b else "0" for b in self.to_numpy()[:64]) if n else ""
        more = "..." if n > 64 else ""
        return f"BitVector(nbits={n}, ones={self.count()}, bits='{head}{more}')"

    # ---- serialization ------------------------------------------------------
    def _to_parts(self, store_index: bool = True):
        meta = [len(self), self.count()] + ([1] if self._bv.index else [])
        secs = [
            ("WRDS", self._words),
            ("BLKS", self._blocks),
            ("SUPR", self._super),
            ("SEL1", self._sel1),
            ("SEL0", self._sel0),
        ]
        return meta, secs if store_index else secs[:1]

    def _device_parts(self):
        """``(meta, sections)`` with the fast index, which the GPU kernels read (a compact
        index is rebuilt for the upload, O(n))."""
        if not self._bv.index:
            return self._to_parts()
        return BitVector.from_words(self._words, len(self))._to_parts()

    @classmethod
    def _from_parts(cls, meta, sections):
        index = index_from_meta(meta, 2, "BitVector")
        need = ("WRDS", "BLKS", "SUPR", "SEL1", "SEL0")
        if set(sections) not in (set(need), {"WRDS"}):
            raise WaveletError(f"BitVector: expected sections {need} or WRDS alone, got "
                               f"{tuple(sections)}")
        arrs = []
        for t in need[: len(sections)]:
            a = sections[t]
            if a.dtype != np.uint64 or a.ndim != 1:
                raise WaveletError(f"BitVector: section {t} must be 1-D uint64")
            arrs.append(a)
        nbits, ones = meta[:2]
        if ones > nbits or nbits > 1 << 58:
            raise WaveletError("BitVector: bad bit or one count")
        self = cls.__new__(cls)
        if len(arrs) == 1:  # format 1.3: no stored index; rebuilt from the bits
            if arrs[0].size != -(-nbits // 64):
                raise WaveletError(f"BitVector: {arrs[0].size} words cannot hold {nbits} bits")
            try:
                self._build(arrs[0], nbits, index)
            except ValueError:
                raise WaveletError("BitVector: bits past nbits are set (corrupt data)") from None
            if self.count() != ones:
                raise WaveletError(f"BitVector: the bits hold {self.count()} ones, the meta "
                                   f"says {ones} (corrupt data)")
            return self
        self._attach(*arrs, nbits, ones, index)
        st = lib.wv_bv_validate(self._bv)
        if st != lib.WV_OK:
            raise WaveletError("BitVector: index does not match the bits (corrupt data)")
        return self

    def to_bytes(self, *, store_index: bool = True) -> bytes:
        """Serialize (docs/format.md). ``store_index=False`` leaves out the rank/select
        index (format 1.3: about 0.5% (compact) or 4.7% (fast) of the bits smaller; the
        reader rebuilds it in O(n), so only the bits are zero-copy)."""
        return _format.pack(self._KIND, *self._to_parts(store_index))

    @classmethod
    def from_bytes(cls, data, *, max_bytes=None, verify=True) -> BitVector:
        """Deserialize and validate; the result views *data* when it is aligned."""
        return _format.from_buffer(data, expect=cls, max_bytes=max_bytes, verify=verify)

    def save(self, path, *, store_index: bool = True) -> None:
        """Write to *path* atomically (temporary file, then rename); *store_index* as for
        :meth:`to_bytes`."""
        _format.save(self, path, store_index=store_index)

    @classmethod
    def load(cls, path, *, mmap: bool = False, max_bytes=None, verify=True) -> BitVector:
        """Read from *path*; ``mmap=True`` maps the file and copies nothing."""
        return _format.load(path, mmap=mmap, expect=cls, max_bytes=max_bytes, verify=verify)

    def __reduce_ex__(self, protocol):
        return _format.reduce(self, protocol)

    def to_device(self, device=None):
        """Upload to a GPU: a :class:`wavelet.cuda.DeviceBitVector` holding the
        same serialized arrays, with batch queries and bulk extract (needs CuPy)."""
        from ._gpu_bitvector import DeviceBitVector

        return DeviceBitVector.from_host(self, device)
