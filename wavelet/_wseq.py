"""Private helpers shared by WaveletMatrix and WaveletTree: input symbols,
the level bitvector (built and attached through the bitvector C API), and
argument conversion for batch queries."""

from __future__ import annotations

import numpy as np

from ._core import WaveletError, as_index, as_index_array, buf, check, ffi, lib, wbuf

# dtype codes (as in docs/format.md section dtypes) and input kinds
DTYPES = {1: "u1", 2: "u2", 3: "u4", 4: "u8", 5: "i1", 6: "i2", 7: "i4", 8: "i8"}
CODES = {np.dtype(v): k for k, v in DTYPES.items()}
KIND_ARRAY, KIND_BYTES, KIND_STR = 0, 1, 2
BV_TAGS = ("WRDS", "BLKS", "SUPR", "SEL1", "SEL0")
# the rank/select index sections: derived from the bits, so a file may leave them out (format
# 1.3, ``store_index=False``) and the reader rebuilds them
INDEX_TAGS = BV_TAGS[1:]


def as_symbols(seq, name: str, alphabet_size=None):
    """Input sequence -> (1-D C-contiguous array with its own dtype, unsigned
    view of it, kind). Raises TypeError/ValueError for unsupported input."""
    kind = KIND_ARRAY
    if isinstance(seq, bytes | bytearray | memoryview):
        a = np.frombuffer(bytes(seq), dtype=np.uint8)
        kind = KIND_BYTES
    elif isinstance(seq, str):
        a = np.frombuffer(seq.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.uint32)
        kind = KIND_STR
    else:
        if isinstance(seq, np.ndarray):
            a = seq
        else:
            items = list(seq)
            if not items:
                a = np.zeros(0, dtype=np.int64)
            else:
                try:
                    a = np.asarray(items)
                except OverflowError:
                    a = np.asarray(items, dtype=object)
                if a.dtype == object:
                    try:
                        a = np.asarray(items, dtype=np.uint64)
                    except (OverflowError, TypeError, ValueError):
                        raise ValueError(
                            f"{name}: symbols must be integers in [0, 2**64)"
                        ) from None
        if a.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D sequence, got shape {a.shape}")
        if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
            if a.size == 0 and not isinstance(seq, np.ndarray):
                a = a.astype(np.int64)
            else:
                raise TypeError(f"{name}: expected integer symbols, got dtype {a.dtype}")
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))
        if np.issubdtype(a.dtype, np.signedinteger) and a.size and a.min() < 0:
            raise ValueError(
                f"{name}: negative symbol {int(a.min())}; symbols must be >= 0 "
                "(shift the values, e.g. seq - seq.min(), or view them as unsigned)"
            )
    u = a.view(np.dtype(f"u{a.dtype.itemsize}")) if a.dtype.kind == "i" else a
    if alphabet_size is not None:
        alphabet_size = as_index(alphabet_size, "alphabet_size")
        if alphabet_size < 1 or alphabet_size > 1 << 64:
            raise ValueError(f"{name}: alphabet_size must be in [1, 2**64]")
        if u.size and int(u.max()) >= alphabet_size:
            raise ValueError(
                f"{name}: symbol {int(u.max())} is outside the alphabet [0, {alphabet_size})"
            )
    return a, u, kind


def dtype_max(dt: np.dtype) -> int:
    return int(np.iinfo(dt).max)


INDEX_KINDS = ("fast", "compact")  # wv_bv_t.index 0 / 1


def index_code(index, op: str) -> int:
    """'fast' -> 0, 'compact' -> 1 (the rank/select index layout, see wavelet.h)."""
    if index not in INDEX_KINDS:
        raise ValueError(f"{op}: index must be one of {INDEX_KINDS}, got {index!r}")
    return INDEX_KINDS.index(index)


def index_from_meta(meta, base: int, op: str) -> int:
    """The index kind stored after the *base* meta words of a kind (format 1.2 appends one
    word, 1 = compact, when the index is not the fast one)."""
    if len(meta) == base:
        return 0
    if len(meta) != base + 1:
        raise WaveletError(f"{op}: bad meta length")
    code = int(meta[base])
    if code not in (0, 1):
        raise WaveletError(f"{op}: unknown index kind {code}")
    return code


class LevelBits:
    """The concatenated level bitvector: five uint64 arrays and a wv_bv_t."""

    __slots__ = ("arrays", "bv", "keep", "nbits", "ones", "index")

    @classmethod
    def build(cls, words: np.ndarray, nbits: int, op: str, index: int = 0) -> LevelBits:
        ones = ffi.new("uint64_t *")
        check(lib.wv_bv_count(buf(words), nbits, ones), op)
        sizes = ffi.new("uint64_t[5]")
        check(
            lib.wv_bv_layout(
                nbits, ones[0], index, sizes + 0, sizes + 1, sizes + 2, sizes + 3, sizes + 4
            ),
            op,
        )
        idx = [np.empty(int(sizes[k]), dtype=np.uint64) for k in range(1, 5)]
        self = cls.attach([words, *idx], nbits, int(ones[0]), index)
        check(lib.wv_bv_build(self.bv, *[wbuf(a) for a in idx]), op)
        for a in self.arrays:
            a.flags.writeable = False
        return self

    @classmethod
    def attach(cls, arrays, nbits: int, ones: int, index: int = 0) -> LevelBits:
        self = cls()
        self.arrays = list(arrays)
        bv = ffi.new("wv_bv_t *")
        keep = [buf(a) for a in self.arrays]
        bv.words, bv.blocks, bv.super, bv.sel1, bv.sel0 = keep
        bv.nbits, bv.ones, bv.index = nbits, ones, index
        self.index = index
        w, b, s, s1, s0 = self.arrays
        bv.nwords, bv.nblocks, bv.nsuper = w.size, b.size, s.size
        bv.nsel1, bv.nsel0 = s1.size, s0.size
        self.bv, self.keep, self.nbits, self.ones = bv, keep, nbits, ones
        return self

    @classmethod
    def from_sections(cls, sections, nbits: int, ones: int, op: str, index: int = 0) -> LevelBits:
        """The level bits from a structure's sections: the stored index is checked against
        the bits, or (format 1.3: no index section at all) rebuilt from them, O(n) either
        way; *ones* must match the bits."""
        if ones > nbits or nbits > 1 << 58:
            raise WaveletError(f"{op}: bad bit or one count")
        stored = [t for t in INDEX_TAGS if t in sections]
        if not stored:
            return cls._rebuild(sections.get("WRDS"), nbits, ones, op, index)
        arrs = []
        for t in BV_TAGS:
            a = sections.get(t)
            if a is None or a.dtype != np.uint64 or a.ndim != 1:
                raise WaveletError(f"{op}: section {t} missing or not uint64")
            arrs.append(a)
        self = cls.attach(arrs, nbits, ones, index)
        if lib.wv_bv_validate(self.bv) != lib.WV_OK:
            raise WaveletError(
                f"{op}: level bitvector index does not match its bits (corrupt data)")
        return self

    @classmethod
    def _rebuild(cls, words, nbits: int, ones: int, op: str, index: int) -> LevelBits:
        if words is None or words.dtype != np.uint64 or words.ndim != 1:
            raise WaveletError(f"{op}: section WRDS missing or not uint64")
        if words.size != -(-nbits // 64):
            raise WaveletError(f"{op}: section WRDS holds {words.size} words, expected "
                               f"{-(-nbits // 64)} for {nbits} bits")
        try:
            self = cls.build(words, nbits, op, index)
        except WaveletError:
            raise WaveletError(f"{op}: level bits have set padding bits (corrupt data)") from None
        if self.ones != ones:
            raise WaveletError(f"{op}: level bits hold {self.ones} ones, the meta says {ones} "
                               "(corrupt data)")
        return self

    def sections(self, store_index: bool = True):
        """``[(tag, array)]``: the bits and, if *store_index*, the index arrays."""
        secs = list(zip(BV_TAGS, self.arrays, strict=True))
        return secs if store_index else secs[:1]

    def meta_tail(self) -> list:
        """Meta words after a kind's own: none for the fast index (1.1 readers keep
        reading those files), ``[1]`` for the compact one."""
        return [self.index] if self.index else []

    def fast(self) -> LevelBits:
        """The same bits with the fast index (for GPU upload); self if it has it."""
        return self if self.index == 0 else LevelBits.build(self.arrays[0], self.nbits, "index", 0)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)


def sym_array(c, name: str) -> np.ndarray:
    """Symbols for batch queries -> uint64 (ValueError for negative / too large)."""
    a = np.asarray(c)
    if a.size == 0:
        return np.empty(a.shape, dtype=np.uint64)
    if a.dtype == object:
        try:
            a = a.astype(np.uint64)
        except (OverflowError, TypeError, ValueError):
            raise ValueError(f"{name}: symbols must be integers in [0, 2**64)") from None
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name}: expected integer symbols, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.signedinteger) and a.min() < 0:
        raise ValueError(f"{name}: negative symbol {int(a.min())}")
    return a.astype(np.uint64)


def sym_scalar(c, name: str) -> int:
    c = as_index(c, name)
    if c < 0 or c >= 1 << 64:
        raise ValueError(f"{name}: symbol {c} is outside [0, 2**64)")
    return c


def pos_scalar(i, name: str) -> int:
    i = as_index(i, name)
    if i < 0 or i >= 1 << 64:
        raise IndexError(f"{name}: index {i} out of range")
    return i


def is_batch(*xs) -> bool:
    return any(isinstance(x, np.ndarray | list | tuple | range) for x in xs)


def batch_args(specs, name: str):
    """specs: list of (value, 'pos' | 'sym'); broadcast -> flat uint64 arrays, shape."""
    arrs = []
    for v, what in specs:
        if what == "sym":
            arrs.append(sym_array(v, name))
        else:
            a = np.asarray(v)
            if a.size == 0:
                arrs.append(np.empty(a.shape, dtype=np.uint64))
            else:
                q, shape = as_index_array(a, name)
                arrs.append(q.reshape(shape))
    b = np.broadcast_arrays(*arrs)
    shape = b[0].shape
    return [np.ascontiguousarray(x, dtype=np.uint64).reshape(-1) for x in b], shape


def u64ptr(a):
    return ffi.from_buffer("uint64_t[]", a, require_writable=False)


def u64wptr(a):
    return ffi.from_buffer("uint64_t[]", a, require_writable=True)


def check_out(out, dtype, m: int, op: str) -> np.ndarray:
    if out is None:
        return np.empty(m, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{op}: out must be a numpy array")
    if out.dtype != dtype:
        raise TypeError(f"{op}: out must have dtype {dtype}, got {out.dtype}")
    if out.shape != (m,):
        raise ValueError(f"{op}: out must have shape ({m},), got {out.shape}")
    if not out.flags.c_contiguous or not out.flags.writeable or not out.flags.aligned:
        raise ValueError(f"{op}: out must be C-contiguous, aligned and writable")
    return out


def norm_range(l, r, n: int, op: str):
    l = as_index(l, "l")
    r = n if r is None else as_index(r, "r")
    if l < 0 or r > n or l > r:
        raise IndexError(f"{op}: range [{l}, {r}) is not inside [0, {n}]")
    return l, r
