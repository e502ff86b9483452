"""WaveletTree: balanced or Huffman-shaped wavelet tree (C core:
wavelet_tree.c, huffman.c)."""

from __future__ import annotations

import numpy as np

from . import _format
from ._core import WaveletError, as_index, check, ffi, lib
from ._wavelet_matrix import _SeqMixin
from ._wseq import (
    BV_TAGS,
    CODES,
    INDEX_KINDS,
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

__all__ = ["FieldDecoder", "WaveletTree"]

_SHAPES = {"balanced": 0, "huffman": 1}
_SHAPE_NAMES = {v: k for k, v in _SHAPES.items()}
MAX_CODE_LEN = 32


def _count_operands(p: int, lead: int, block: int) -> int:
    """Operand positions in ``[0, p)`` of a tree whose first *lead* symbols are not
    operands and, with ``block > 0``, whose every (block+1)-th symbol after them is a
    delimiter (a dnn_adapter RAS: ``lead=1``, ``block`` = block length); shared with the
    GPU twin."""
    q = max(p - lead, 0)
    if not block:
        return q
    b, o = divmod(q, block + 1)
    return b * block + min(o, block)


def _arr(a, dtypes, name, op):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{op}: {name} must be a numpy array")
    if a.dtype not in dtypes:
        raise TypeError(f"{op}: {name} has dtype {a.dtype}, expected one of "
                        f"{[str(np.dtype(d)) for d in dtypes]}")
    return np.ascontiguousarray(a).reshape(-1)


def _smallest_uint(v: int):
    for d in (np.uint8, np.uint16, np.uint32):
        if v <= np.iinfo(d).max:
            return d
    return np.uint64


def _derive_symbol_tables(symc, op: str) -> dict:
    """SYMS/SKEY/SPOS (format 1.0's tables) from format 1.1's SYMC section.

    SYMC lists the symbols in canonical-code order; SKEY is them sorted, SPOS the
    canonical index of each SKEY entry. Duplicates are corrupt data (the C validation
    then checks the tables against the code as for format 1.0).
    """
    if not isinstance(symc, np.ndarray) or symc.ndim != 1 or symc.dtype.kind != "u":
        raise WaveletError(f"{op}: section SYMC has a bad dtype")
    syms = symc.astype(np.uint64)
    order = np.argsort(syms, kind="stable")
    skey = syms[order]
    if skey.size > 1 and not (skey[1:] > skey[:-1]).all():
        raise WaveletError(f"{op}: repeated symbol in SYMC")
    return {"SYMS": syms, "SKEY": skey, "SPOS": order.astype(np.uint32)}


def _histogram(u: np.ndarray):
    """(sorted distinct symbols, their counts, lut or None, ids or None)."""
    n = u.size
    mx = int(u.max())
    if mx < max(1 << 16, 2 * n) and mx < 1 << 32:
        counts = np.empty(mx + 1, dtype=np.uint64)
        check(lib.wv_wt_histogram(ffi.from_buffer(u), u.dtype.itemsize, n, mx, u64wptr(counts)),
              "WaveletTree")
        skey = np.flatnonzero(counts).astype(np.uint64)
        return skey, counts[skey], mx, None
    skey, inv, freq = np.unique(u, return_inverse=True, return_counts=True)
    return skey.astype(np.uint64), freq.astype(np.uint64), None, inv.reshape(-1)


@_format.register_kind(3)
class WaveletTree(_SeqMixin):
    """A wavelet tree, balanced or Huffman-shaped, over non-negative integers.

    Parameters
    ----------
    seq : bytes, str, or 1-D array_like of non-negative integers
        As for :class:`WaveletMatrix` (signed arrays must not hold negatives).
    shape : {"balanced", "huffman"}
        ``"balanced"``: ``ceil(log2 sigma)`` bits per symbol over the sigma
        distinct symbols, in symbol order. ``"huffman"``: canonical,
        length-limited Huffman codes, ``n (H0 + 1)`` bits at most (plus the
        bitvector index and 20 bytes per distinct symbol).
    max_code_len : int
        Longest code allowed (1..32, at least ``ceil(log2 sigma)``).
    alphabet_size : int, optional
        Declared alphabet ``[0, alphabet_size)``, checked against the input.

    Raises
    ------
    TypeError
        For non-integer input.
    ValueError
        For negative symbols, symbols outside the alphabet, a bad shape, or
        more than ``2**max_code_len`` distinct symbols.

    Notes
    -----
    A pointerless level-wise tree over canonical codes (Grossi, Gupta,
    Vitter, SODA 2003; Huffman shape after Mäkinen and Navarro, 2005):
    access/rank cost ``O(len(code))`` ranks, select ``O(len)`` selects; bulk
    :meth:`extract` decodes level by level with sequential merges. Queries
    are read-only and thread-safe; batch forms run in C without the GIL.
    """

    __slots__ = ("_n", "_nlevels", "_max_symbol", "_dtype", "_kind", "_lb", "_wt", "_shape",
                 "_tabs", "_max_code_len", "__weakref__")

    def __init__(self, seq=(), shape: str = "balanced", *, max_code_len: int = MAX_CODE_LEN,
                 alphabet_size=None, index: str = "fast"):
        icode = index_code(index, "WaveletTree")
        if shape not in _SHAPES:
            raise ValueError(f"WaveletTree: shape must be 'balanced' or 'huffman', got {shape!r}")
        max_code_len = as_index(max_code_len, "max_code_len")
        if not 1 <= max_code_len <= MAX_CODE_LEN:
            raise ValueError(f"WaveletTree: max_code_len must be in [1, {MAX_CODE_LEN}]")
        a, u, kind = as_symbols(seq, "WaveletTree", alphabet_size)
        n = int(u.size)
        if n:
            skey, freq, lutmax, inv = _histogram(u)
        else:
            skey, freq, lutmax, inv = (np.empty(0, np.uint64), np.empty(0, np.uint64), None, None)
        sigma = int(skey.size)
        need = max(1, (sigma - 1).bit_length())
        if need > max_code_len:
            raise ValueError(
                f"WaveletTree: {sigma} distinct symbols need codes longer than max_code_len="
                f"{max_code_len}"
            )
        if shape == "balanced" or sigma <= 1:
            lens = np.full(sigma, need, dtype=np.uint8)
        else:
            lens = np.empty(sigma, dtype=np.uint8)
            check(lib.wv_huffman_lengths(u64ptr(freq), sigma, max_code_len,
                                         ffi.from_buffer("uint8_t[]", lens, require_writable=True)),
                  "WaveletTree")
        L = int(lens.max()) if sigma else 1
        order = np.lexsort((skey, lens)) if sigma else np.empty(0, np.intp)
        syms = np.ascontiguousarray(skey[order])
        spos = np.empty(sigma, dtype=np.uint32)
        spos[order] = np.arange(sigma, dtype=np.uint32)
        cnt = np.bincount(lens, minlength=L + 1).astype(np.uint64)[: L + 1]
        nact = np.zeros(L + 1, dtype=np.uint64)
        if sigma:
            flen = np.bincount(lens, weights=freq.astype(np.float64), minlength=L + 1)
            # exact integer suffix sums (weights in float64 are exact below 2**53)
            flen = np.round(flen).astype(np.uint64)
            for d in range(L):
                nact[d] = int(flen[d + 1 :].sum())
        nbits_p = ffi.new("uint64_t *")
        check(lib.wv_wt_layout(u64ptr(nact), L, icode, nbits_p), "WaveletTree")
        nbits = int(nbits_p[0])
        words = np.empty(nbits // 64, dtype=np.uint64)
        if n:
            if lutmax is not None:
                lut = np.full(lutmax + 1, 0xFFFFFFFF, dtype=np.uint32)
                lut[skey] = spos
                src, width = ffi.from_buffer(u), u.dtype.itemsize
                lutp, lutn = ffi.from_buffer("uint32_t[]", lut), lut.size
            else:
                ids = spos[inv].astype(np.uint32)
                src, width, lutp, lutn = ffi.from_buffer(ids), 4, ffi.NULL, 0
        else:
            src, width, lutp, lutn = ffi.NULL, 4, ffi.NULL, 0  # no symbols: no lookup table
        check(lib.wv_wt_build_bits(src, width, n, lutp, lutn, u64ptr(cnt), L, sigma, u64ptr(nact),
                                   icode, u64wptr(words), words.size), "WaveletTree")
        lb = LevelBits.build(words, nbits, "WaveletTree", icode)
        if alphabet_size is not None:
            mx = int(alphabet_size) - 1
        else:
            mx = int(skey[-1]) if sigma else 0
        for arr in (syms, skey, spos, cnt, nact):
            arr.flags.writeable = False
        self._setup(n, L, mx, a.dtype, kind, lb, _SHAPES[shape], max_code_len,
                    (syms, np.ascontiguousarray(skey), spos, cnt, nact))

    def _setup(self, n, L, mx, dtype, kind, lb, shape, max_code_len, tabs) -> None:
        self._n, self._nlevels, self._max_symbol = n, L, mx
        self._dtype, self._kind, self._lb = np.dtype(dtype), kind, lb
        self._shape, self._max_code_len, self._tabs = shape, max_code_len, tabs
        syms, skey, spos, cnt, nact = tabs
        wt = ffi.new("wv_wt_t *")
        keep = [ffi.from_buffer("uint64_t[]", syms), ffi.from_buffer("uint64_t[]", skey),
                ffi.from_buffer("uint32_t[]", spos)]
        st = lib.wv_wt_init(wt, lb.bv, n, L, u64ptr(cnt), u64ptr(nact), keep[0], keep[1], keep[2],
                            syms.size)
        if st == lib.WV_ECORRUPT:
            raise WaveletError("WaveletTree: code tables or levels are inconsistent (corrupt data)")
        check(st, "WaveletTree")
        self._wt = (wt, keep)

    # ---- sizes ------------------------------------------------------------------------
    @property
    def shape(self) -> str:
        """``"balanced"`` or ``"huffman"``."""
        return _SHAPE_NAMES[self._shape]

    @property
    def nlevels(self) -> int:
        """Longest code length (number of levels)."""
        return self._nlevels

    @property
    def nsymbols(self) -> int:
        """Number of distinct symbols (sigma)."""
        return int(self._tabs[0].size)

    @property
    def nbytes(self) -> int:
        """Bytes of all arrays: level bits, their index, code tables."""
        return self._lb.nbytes + sum(a.nbytes for a in self._tabs)

    @property
    def stored_nbytes(self) -> int:
        """Bytes of the arrays a file stores (the sections; without the container's header,
        section table and alignment): the symbol tables are smaller on disk than in memory.
        With the rank/select index; ``stored_nbytes - index_nbytes`` without it."""
        return sum(int(a.nbytes) for _t, a in self._to_parts()[1])

    @property
    def index_nbytes(self) -> int:
        """Bytes of the rank/select index arrays (what ``store_index=False`` leaves out)."""
        return sum(int(a.nbytes) for a in self._lb.arrays[1:])

    def size_bits(self) -> int:
        out = ffi.new("uint64_t *")
        check(lib.wv_wt_size_bits(self._wt[0], out), "size_bits")
        return int(out[0])

    def code_lengths(self) -> dict:
        """``{symbol: code length}`` of the tree's canonical code."""
        syms, _, _, cnt, _ = self._tabs
        lens = np.repeat(np.arange(cnt.size), cnt.astype(np.int64))
        return dict(zip(syms.tolist(), lens.tolist(), strict=True))

    def space(self) -> dict:
        """Space report: bits per symbol (code bits, total), H0, index overhead."""
        n = max(self._n, 1)
        syms, skey, spos, cnt, nact = self._tabs
        code_bits = int(nact.sum())
        total = self.size_bits()
        return {
            "n": self._n,
            "shape": self.shape,
            "nsymbols": int(syms.size),
            "nlevels": self._nlevels,
            "code_bits": code_bits,
            "level_bits": int(self._lb.nbits),
            "total_bytes": self.nbytes,
            "code_bits_per_symbol": code_bits / n,
            "bits_per_symbol": total / n,
        }

    def __repr__(self) -> str:
        head = self.extract(0, min(self._n, 10)).tolist()
        more = ", ..." if self._n > 10 else ""
        return (
            f"WaveletTree(n={self._n}, shape={self.shape!r}, dtype={self._dtype}, "
            f"nsymbols={self.nsymbols}, nlevels={self._nlevels}, "
            f"seq=[{', '.join(map(str, head))}{more}])"
        )

    # ---- queries ------------------------------------------------------------------------
    def access(self, i):
        """Symbol at position ``i`` (int -> int; integer array -> array of ``dtype``).

        Raises
        ------
        IndexError
            If ``i < 0`` or ``i >= len``.
        """
        wt = self._wt[0]
        if not is_batch(i):
            i = pos_scalar(i, "access")
            out = ffi.new("uint64_t *")
            check(lib.wv_wt_access(wt, i, out), "access")
            return int(out[0])
        (q,), shape = batch_args([(i, "pos")], "access")
        res = np.empty(q.size, dtype=np.uint64)
        bad = ffi.new("size_t *")
        check(lib.wv_wt_access_batch(wt, u64ptr(q), q.size, u64wptr(res), bad), "access",
              bad=bad[0])
        return self._result(res, shape)

    def rank(self, c, i):
        """Occurrences of ``c`` in ``[0, i)``, ``0 <= i <= len`` (ints or arrays).

        Raises
        ------
        IndexError
            If ``i`` is negative or greater than ``len``.
        ValueError
            If ``c`` is negative or not below ``2**64``.
        """
        wt = self._wt[0]
        if not is_batch(c, i):
            c, i = sym_scalar(c, "rank"), pos_scalar(i, "rank")
            out = ffi.new("uint64_t *")
            check(lib.wv_wt_rank(wt, c, i, out), "rank")
            return int(out[0])
        (cc, q), shape = batch_args([(c, "sym"), (i, "pos")], "rank")
        res = np.empty(q.size, dtype=np.uint64)
        bad = ffi.new("size_t *")
        st = lib.wv_wt_rank_batch(wt, u64ptr(cc), u64ptr(q), q.size, u64wptr(res), bad)
        check(st, "rank", bad=bad[0])
        return res.reshape(shape)

    def select(self, c, k):
        """Position of the ``k``-th (0-based) occurrence of ``c``.

        Raises
        ------
        IndexError
            If ``c`` occurs ``k`` times or fewer (or ``k < 0``).
        """
        wt = self._wt[0]
        if not is_batch(c, k):
            c, k = sym_scalar(c, "select"), pos_scalar(k, "select")
            out = ffi.new("uint64_t *")
            check(lib.wv_wt_select(wt, c, k, out), "select", what="k")
            return int(out[0])
        (cc, q), shape = batch_args([(c, "sym"), (k, "pos")], "select")
        res = np.empty(q.size, dtype=np.uint64)
        bad = ffi.new("size_t *")
        st = lib.wv_wt_select_batch(wt, u64ptr(cc), u64ptr(q), q.size, u64wptr(res), bad)
        check(st, "select", bad=bad[0], what="k")
        return res.reshape(shape)

    def extract(self, l=0, r=None, out=None):
        """Symbols ``[l, r)`` as an array of ``dtype``, written into *out* if given.

        *out* must be a C-contiguous, aligned, writable array of ``dtype`` and
        shape ``(r - l,)``. Decodes level by level (sequential merges of the
        children of every node), not ``r - l`` accesses.

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
        wt = self._wt[0]
        ne = ffi.new("uint64_t *")
        check(lib.wv_wt_extract_ws(wt, l, r, ne), "extract")
        ws = np.empty(int(ne[0]) * 8, dtype=np.uint64)
        sigma = self.nsymbols
        iw = 1 if sigma <= 256 else 2 if sigma <= 65536 else 4
        ow = self._dtype.itemsize
        if iw >= ow:
            iw = 0
            tmp = np.empty(m, dtype=self._dtype)
        else:
            tmp = np.empty(m, dtype=f"u{iw}")
        st = lib.wv_wt_extract(wt, l, r, ffi.from_buffer(out, require_writable=True), ow,
                               ffi.from_buffer(tmp, require_writable=True), iw, u64wptr(ws),
                               int(ne[0]))
        check(st, "extract")
        return out

    # ---- fused decodes (host twins of DeviceWaveletTree.decode_float) ---------------------
    def float_decoder(self, table, exp_bits: int, mant_bits: int, planes, top=None, *,
                      lead: int = 0, block: int = 0, nelems: int | None = None):
        """A :class:`FieldDecoder` for :meth:`decode_float`: the parts are checked once,
        then ``dec(out, start=0, stop=None)`` decodes with no per-call validation beyond
        the range and *out* (for decoding the same weights on every forward pass)."""
        op = "decode_float"
        e, m = int(exp_bits), int(mant_bits)
        word = {16: np.uint16, 32: np.uint32, 64: np.uint64}.get(1 + e + m)
        if word is None or e < 1 or m < 0 or e > 16:
            raise ValueError(f"{op}: need 1 <= exp_bits <= 16 and 1 + exp_bits + mant_bits "
                             f"in (16, 32, 64); got {e}, {m}")
        nplanes, rem = divmod(m + 1, 8)
        if nelems is None and isinstance(planes, np.ndarray) and planes.ndim == 2:
            nelems = planes.shape[1]
        lead, block, nel = self._operand_layout(lead, block, nelems, op)
        table = _arr(table, (np.uint16,), "table", op)
        planes = _arr(planes, (np.uint8,), "planes", op)
        if planes.size != nplanes * nel:
            raise ValueError(f"{op}: planes hold {planes.size} bytes, expected {nplanes} x {nel}")
        top = np.zeros(0, np.uint8) if top is None else _arr(top, (np.uint8,), "top", op)
        if rem and top.size != (nel * rem + 7) // 8:
            raise ValueError(f"{op}: top holds {top.size} bytes, expected {(nel * rem + 7) // 8}")
        if table.size == 0:
            raise ValueError(f"{op}: empty table")
        fixed = (ffi.from_buffer("uint16_t[]", table), table.size, e, m,
                 ffi.from_buffer("uint8_t[]", planes), planes.size,
                 ffi.from_buffer("uint8_t[]", top), top.size)
        return FieldDecoder(self, op, lib.wv_wt_decode_float, fixed, (table, planes, top),
                            np.dtype(word), lead, block, nel)

    def lookup_decoder(self, table, *, lead: int = 0, block: int = 0,
                       nelems: int | None = None):
        """A :class:`FieldDecoder` for :meth:`decode_lookup` (parts checked once)."""
        op = "decode_lookup"
        lead, block, nel = self._operand_layout(lead, block, nelems, op)
        table = _arr(table, (np.uint8, np.uint16, np.uint32, np.uint64), "table", op)
        if table.size == 0:
            raise ValueError(f"{op}: empty table")
        fixed = (ffi.from_buffer(table), table.size, table.itemsize)

        def fn(wt, start, stop, lead, block, nel, tab, ntab, width, out, _out_width, count):
            return lib.wv_wt_decode_lookup(wt, start, stop, lead, block, nel, tab, ntab, width,
                                           out, count)

        return FieldDecoder(self, op, fn, fixed, (table,), table.dtype, lead, block, nel)

    def _operand_layout(self, lead, block, nelems, op):
        lead, block = int(lead), int(block)
        if lead < 0 or block < 0:
            raise ValueError(f"{op}: lead and block must be >= 0")
        total = _count_operands(self._n, lead, block)
        nel = total if nelems is None else int(nelems)
        if not 0 <= nel <= total:
            raise ValueError(f"{op}: nelems={nel} but the tree holds {total} operands")
        return lead, block, nel

    def decode_float(self, table, exp_bits: int, mant_bits: int, planes, top=None, *,
                     out=None, start: int = 0, stop: int | None = None, lead: int = 0,
                     block: int = 0, nelems: int | None = None):
        """Decode exponent codes and rebuild float words in one call (C, GIL released).

        The host twin of :meth:`wavelet.cuda.DeviceWaveletTree.decode_float`: the
        tree's symbols are codes into *table*; *planes* ``(P, nelems)`` and the
        bit-packed *top* hold the raw sign and mantissa bits, as for
        :func:`wavelet.merge_float_fields` (same result bits). Tree positions
        ``[start, stop)`` are decoded in cache-sized chunks (no full-size code
        buffer). With ``lead``/``block`` the tree is a RAS: its first *lead*
        symbols and every ``(block+1)``-th after them are not operands, and
        operands past *nelems* (an end marker) are dropped; operand ``i`` is
        element ``i`` of the parts. Returns (or fills) an unsigned array of the
        word width with the operands of ``[start, stop)`` in order.
        :meth:`float_decoder` checks the parts once for repeated decodes.

        Raises
        ------
        WaveletError
            A code outside *table*, or a table entry wider than *exp_bits*.
        IndexError, ValueError, TypeError
            Bad range, parts, or *out*; or tree symbols wider than 16 bits.
        """
        dec = self.float_decoder(table, exp_bits, mant_bits, planes, top, lead=lead,
                                 block=block, nelems=nelems)
        return dec(out, start, stop)

    def decode_lookup(self, table, *, out=None, start: int = 0, stop: int | None = None,
                      lead: int = 0, block: int = 0, nelems: int | None = None):
        """``table[code]`` for the operands of tree positions ``[start, stop)`` (a
        dictionary decode) in one C call; operands as in :meth:`decode_float`.
        *table* is an unsigned array (1, 2, 4 or 8-byte items); the result has its
        dtype. :meth:`lookup_decoder` checks the table once for repeated decodes.

        Raises
        ------
        WaveletError
            A code outside *table*.
        IndexError, ValueError, TypeError
            Bad range, table or *out*; or tree symbols wider than 16 bits.
        """
        return self.lookup_decoder(table, lead=lead, block=block, nelems=nelems)(
            out, start, stop)

    def to_device(self, device=None):
        """Upload to a GPU: a :class:`wavelet.cuda.DeviceWaveletTree` over the same
        serialized arrays (no re-encoding), with batch access/rank/select, bulk
        extract and a decode fused with float reassembly (needs CuPy and a CUDA
        device; CuPy is imported only here)."""
        from ._gpu_wavelet_tree import DeviceWaveletTree

        return DeviceWaveletTree.from_host(self, device)

    # ---- serialization --------------------------------------------------------------------
    @property
    def index(self) -> str:
        """The rank/select index kind of the level bits, ``"fast"`` or ``"compact"``."""
        return INDEX_KINDS[self._lb.index]

    def _device_parts(self):
        """``(meta, sections)`` with the full symbol tables SYMS/SKEY/SPOS (format 1.0's
        sections, as held in memory) and the fast index: what the GPU twin uploads (its
        kernels read the fast index; a compact one is rebuilt for the upload, O(n))."""
        meta, _ = self._to_parts()
        meta = list(meta[:10])
        syms, skey, spos, cnt, nact = self._tabs
        lb = self._lb
        if lb.index:  # 64-bit level alignment -> the fast layout's 512
            words = _realign(lb.arrays[0], nact, self._nlevels, 64, 512)
            lb = LevelBits.build(words, 64 * words.size, "WaveletTree.to_device", 0)
            meta[8] = lb.nbits
        secs = lb.sections() + [("SYMS", syms), ("SKEY", skey), ("SPOS", spos),
                                ("CNTS", cnt), ("NACT", nact)]
        return meta, secs

    def _to_parts(self, store_index: bool = True):
        syms, skey, spos, cnt, nact = self._tabs
        meta = [self._n, self._nlevels, int(syms.size), self._shape, CODES[self._dtype],
                self._kind, self._max_code_len, self._max_symbol, int(self._lb.nbits),
                int(self._lb.ones)] + self._lb.meta_tail()
        # format 1.1: the canonical-order symbols alone, in the smallest unsigned width; the
        # sorted keys and their positions (SKEY/SPOS of format 1.0) are derived on load
        width = _smallest_uint(int(syms.max()) if syms.size else 0)
        if self._lb.index:  # format 1.2 (with the compact index): CNTS/NACT narrowed too
            cnt = cnt.astype(_smallest_uint(int(cnt.max())))
            nact = nact.astype(_smallest_uint(int(nact.max())))
        secs = self._lb.sections(store_index) + [("SYMC", syms.astype(width)), ("CNTS", cnt),
                                      ("NACT", nact)]
        return meta, secs

    @classmethod
    def _from_parts(cls, meta, sections):
        op = "WaveletTree"
        index = index_from_meta(meta, 10, op)
        n, L, sigma, shape, code, kind, mcl, mx, nbits, ones = (int(x) for x in meta[:10])
        v10 = {"SYMS", "SKEY", "SPOS", "CNTS", "NACT"}  # format 1.0
        v11 = {"SYMC", "CNTS", "NACT"}  # format 1.1
        # format 1.3: the index sections may be left out (rebuilt from WRDS)
        if set(sections) not in [b | t for b in (set(BV_TAGS), {"WRDS"}) for t in (v10, v11)]:
            raise WaveletError(f"{op}: unexpected sections {tuple(sections)}")
        if "SYMC" in sections:
            sections = dict(sections)
            sections.update(_derive_symbol_tables(sections.pop("SYMC"), op))
        if index:  # compact-index trees may store CNTS/NACT in any unsigned width
            sections = dict(sections)
            for t in ("CNTS", "NACT"):
                a = sections[t]
                if a.dtype.kind != "u" or a.ndim != 1:
                    raise WaveletError(f"{op}: section {t} has a bad dtype or length")
                sections[t] = a.astype(np.uint64)
        self = cls.__new__(cls)
        dt = self._check_meta_dtype(code, kind, op)
        if shape not in _SHAPE_NAMES or not 1 <= mcl <= MAX_CODE_LEN or not 1 <= L <= MAX_CODE_LEN:
            raise WaveletError(f"{op}: bad shape or code length")
        if n > 1 << 50 or sigma > min(n, 1 << 32) or mx > dtype_max(dt):
            raise WaveletError(f"{op}: bad length, symbol count or max symbol")
        for t, d, size in (("SYMS", np.uint64, sigma), ("SKEY", np.uint64, sigma),
                           ("SPOS", np.uint32, sigma), ("CNTS", np.uint64, L + 1),
                           ("NACT", np.uint64, L + 1)):
            a = sections[t]
            if a.dtype != d or a.ndim != 1 or a.size != size:
                raise WaveletError(f"{op}: section {t} has a bad dtype or length")
        skey = sections["SKEY"]
        if sigma and int(skey[-1]) > mx:
            raise WaveletError(f"{op}: symbol outside the alphabet")
        lb = LevelBits.from_sections(sections, nbits, ones, op, index)
        tabs = tuple(
            np.ascontiguousarray(sections[t]) for t in ("SYMS", "SKEY", "SPOS", "CNTS", "NACT")
        )
        self._setup(n, L, mx, dt, kind, lb, shape, mcl, tabs)
        return self


def _realign(words, nact, L, src: int, dst: int) -> np.ndarray:
    """The level bits of *words* (level d: ``nact[d]`` bits, levels padded to *src* bits)
    re-laid with levels padded to *dst* bits (O(total bits) time and bytes)."""
    bits = np.unpackbits(np.ascontiguousarray(words).view(np.uint8), bitorder="little")
    sizes = [int(nact[d]) for d in range(L)]
    total = sum(-(-s // dst) * dst for s in sizes)
    out = np.zeros(total, dtype=np.uint8)
    so = do = 0
    for s in sizes:
        out[do : do + s] = bits[so : so + s]
        so += -(-s // src) * src
        do += -(-s // dst) * dst
    return np.packbits(out, bitorder="little").view(np.uint64).copy()


class FieldDecoder:
    """A fused tree decode with its parts checked once (from
    :meth:`WaveletTree.float_decoder` / :meth:`WaveletTree.lookup_decoder`).

    ``dec(out=None, start=0, stop=None)`` decodes the operands of tree positions
    ``[start, stop)`` into *out* (a C-contiguous writable array of :attr:`dtype`
    and :meth:`count` elements) or a new array, and returns it. Safe to call from
    several threads on disjoint outputs (C releases the GIL). The decoder keeps the
    tree and the parts alive.
    """

    __slots__ = ("_tree", "_op", "_fn", "_fixed", "_keep", "dtype", "_lead", "_block",
                 "nelems", "_full")

    def __init__(self, tree, op, fn, fixed, keep, dtype, lead, block, nelems):
        self._tree, self._op, self._fn, self._fixed, self._keep = tree, op, fn, fixed, keep
        self.dtype, self._lead, self._block, self.nelems = dtype, lead, block, nelems
        self._full = self.count(0, len(tree))

    def count(self, start: int, stop: int) -> int:
        """Operands in tree positions ``[start, stop)`` (capped at :attr:`nelems`)."""
        lead, block, nel = self._lead, self._block, self.nelems
        return (min(_count_operands(stop, lead, block), nel)
                - min(_count_operands(start, lead, block), nel))

    def __call__(self, out=None, start: int = 0, stop: int | None = None):
        n = self._tree._n
        if start == 0 and stop is None:
            stop, count = n, self._full
        else:
            start, stop = int(start), n if stop is None else int(stop)
            if not 0 <= start <= stop <= n:
                raise IndexError(f"{self._op}: range [{start}, {stop}) is not inside [0, {n}]")
            count = self.count(start, stop)
        if out is None:
            out = np.empty(count, dtype=self.dtype)
        elif (type(out) is not np.ndarray or out.dtype != self.dtype or out.shape != (count,)
              or not out.flags.c_contiguous or not out.flags.writeable
              or not out.flags.aligned):
            out = check_out(out, self.dtype, count, self._op)  # raises with the reason
        if count:
            st = self._fn(self._tree._wt[0], start, stop, self._lead, self._block, self.nelems,
                          *self._fixed, ffi.from_buffer(out, require_writable=True),
                          out.itemsize, count)
            check(st, self._op)
        return out
