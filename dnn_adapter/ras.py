"""Runtime-Accessible Sequences (RAS): a layer's symbols, delimiters and flag in one wavelet tree.

The paper's formulation (sections 3-5), as stored here. A layer's operands have already been
turned into dense *codes* ``0 .. k-1`` by a codec (exponent codes, dictionary codes, gap
codes). The RAS appends four control symbols to that alphabet::

    k      FLAG_ELEMENT   '<E>'  first symbol of an element-wise layer
    k + 1  FLAG_BLOCK     '<B>'  first symbol of a block-wise layer
    k + 2  DELIM          '|' (element-wise) or ']' (block-wise): closes a group/block
    k + 3  END            '#'    last symbol of the layer

and the layer becomes ``FLAG  c c c DELIM  c c DELIM ...  END``, stored in one Huffman-shaped
:class:`wavelet.WaveletTree` (operands and delimiters share the alphabet, so a delimiter costs a
few bits). One group/block is one computation kernel's operands (a row of a Linear weight, a
conv filter, an embedding vector; a 1-D tensor is one block). For the sparse tuple extension
(:class:`dnn_adapter.codecs.SparseCodec`) blocks have different lengths: the tuple
``(distance, value)`` is two aligned RAS over the same blocks.

Retrieval (paper section 5): read the flag (``access(0)``), locate the layer end and block
``j`` with ``select(DELIM, j - 1)`` / ``select(DELIM, j)``, then ``extract`` the block
(block-wise) or ``access`` single operands (element-wise). Whole-layer decoding follows the
flag too: block-wise extracts the layer in one call, element-wise gathers all operands with one
batched ``access`` (both in C).
"""

from __future__ import annotations

import numpy as np

import wavelet

from ._bits import smallest_uint

__all__ = ["RAS", "ELEMENT", "BLOCK", "RASError"]

ELEMENT = "element"
BLOCK = "block"
_ACCESS_CHUNK = 1 << 20


class RASError(ValueError):
    """A RAS is malformed (corrupt or inconsistent parts)."""


class RAS:
    """One layer as a runtime-accessible sequence in a Huffman-shaped wavelet tree.

    Build with :meth:`build`; query with :meth:`block`, :meth:`get`, :meth:`decode`.
    """

    __slots__ = ("wt", "k", "nblocks", "n", "block_len", "_whole")

    def __init__(self, wt, k: int, nblocks: int, n: int, block_len: int):
        self.wt, self.k, self.nblocks, self.n, self.block_len = wt, k, nblocks, n, block_len
        self._whole = None  # body_span() of every block (the tree is immutable), once asked

    # ---- symbols -------------------------------------------------------------------------
    @property
    def FLAG_ELEMENT(self) -> int:  # noqa: N802
        return self.k

    @property
    def FLAG_BLOCK(self) -> int:  # noqa: N802
        return self.k + 1

    @property
    def DELIM(self) -> int:  # noqa: N802
        return self.k + 2

    @property
    def END(self) -> int:  # noqa: N802
        return self.k + 3

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def build(cls, codes: np.ndarray, k: int, form: str, block_lengths, *, shape="huffman",
              index="compact"):
        """Build from operand *codes* (values ``< k``) split into blocks.

        *block_lengths* is an int (all blocks that long; ``len(codes)`` must be a multiple)
        or a 1-D array of per-block lengths summing to ``len(codes)``. *index* is the
        tree's rank/select index (:class:`wavelet.WaveletTree`): ``"compact"`` (0.49% of
        the tree bits; bulk decode needs one rank per node) or ``"fast"`` (4.7%, faster
        single-operand access).
        """
        if form not in (ELEMENT, BLOCK):
            raise ValueError(f"RAS: form must be {ELEMENT!r} or {BLOCK!r}, got {form!r}")
        codes = np.asarray(codes).reshape(-1)
        n = codes.size
        if np.ndim(block_lengths) == 0:
            L = int(block_lengths)
            if L <= 0 and n:
                raise ValueError("RAS: block length must be positive")
            nb = n // L if L else 0
            if nb * L != n:
                raise ValueError(f"RAS: {n} operands do not split into blocks of {L}")
            lengths = None
        else:
            lengths = np.asarray(block_lengths, dtype=np.int64).reshape(-1)
            if lengths.sum() != n or (lengths < 0).any():
                raise ValueError("RAS: block lengths do not add up to the operand count")
            nb, L = lengths.size, 0
        dt = smallest_uint(k + 3)
        seq = np.empty(n + nb + 2, dtype=dt)
        seq[0] = k + (1 if form == BLOCK else 0)
        seq[-1] = k + 3
        if L:
            body = seq[1:-1].reshape(nb, L + 1)
            body[:, :L] = codes.reshape(nb, L)
            body[:, L] = k + 2
        elif nb:
            dpos = np.cumsum(lengths) + np.arange(1, nb + 1)  # position of each DELIM
            mask = np.ones(seq.size, dtype=bool)
            mask[0] = mask[-1] = False
            mask[dpos] = False
            seq[dpos] = k + 2
            seq[mask] = codes
        wt = wavelet.WaveletTree(seq, shape=shape, index=index)
        return cls(wt, int(k), int(nb), int(n), int(L))

    # ---- properties ------------------------------------------------------------------------
    @property
    def form(self) -> str:
        """``"element"`` or ``"block"``, read from the flag symbol (paper step 1)."""
        f = int(self.wt.access(0))
        if f == self.FLAG_BLOCK:
            return BLOCK
        if f == self.FLAG_ELEMENT:
            return ELEMENT
        raise RASError(f"RAS: first symbol {f} is not a flag")

    def __len__(self) -> int:
        """Number of operands (delimiters and flag excluded)."""
        return self.n

    @property
    def nbytes(self) -> int:
        """Stored bytes (the tree's sections as a file holds them: the bits and the symbol
        tables; the rank/select index is rebuilt on load, see :meth:`to_parts`)."""
        return int(self.wt.stored_nbytes - self.wt.index_nbytes)

    @property
    def code_dtype(self) -> np.dtype:
        return smallest_uint(self.k + 3)

    # ---- retrieval (paper section 5) ----------------------------------------------------
    def block_span(self, j: int) -> tuple[int, int]:
        """Symbol positions ``[start, end)`` of block *j*, located with two selects."""
        if not 0 <= j < self.nblocks:
            raise IndexError(f"RAS: block {j} out of range (0..{self.nblocks - 1})")
        start = 1 if j == 0 else int(self.wt.select(self.DELIM, j - 1)) + 1
        end = int(self.wt.select(self.DELIM, j))
        return start, end

    def block(self, j: int, out=None) -> np.ndarray:
        """Operand codes of block *j* (select + extract)."""
        start, end = self.block_span(j)
        if out is not None:
            return self.wt.extract(start, end, out=out)
        return self.wt.extract(start, end)

    def block_offset(self, j: int) -> int:
        """Index of block *j*'s first operand in the operand sequence."""
        start, _ = self.block_span(j)
        return start - 1 - j

    def get(self, i: int) -> int:
        """Operand code *i* (element-wise retrieval: select the block, then access)."""
        i = int(i)
        if not 0 <= i < self.n:
            raise IndexError(f"RAS: operand {i} out of range (0..{self.n - 1})")
        if self.block_len:
            j, o = divmod(i, self.block_len)
            start = 1 if j == 0 else int(self.wt.select(self.DELIM, j - 1)) + 1
            return int(self.wt.access(start + o))
        # variable-length blocks: binary search the block whose operand range holds i
        lo, hi = 0, self.nblocks - 1
        while lo < hi:
            mid = (lo + hi) // 2
            end = int(self.wt.select(self.DELIM, mid))  # operands before end: end - 1 - mid
            if end - 1 - mid > i:
                hi = mid
            else:
                lo = mid + 1
        start = 1 if lo == 0 else int(self.wt.select(self.DELIM, lo - 1)) + 1
        return int(self.wt.access(start + i - (start - 1 - lo)))

    def _operand_positions(self) -> np.ndarray:
        if self.block_len:
            L = self.block_len
            pos = np.arange(self.n, dtype=np.uint64)
            pos += pos // np.uint64(L) + np.uint64(1)
            return pos
        mask = np.ones(self.n + self.nblocks + 2, dtype=bool)
        mask[0] = mask[-1] = False
        if self.nblocks:
            mask[self._delims()] = False
        return np.flatnonzero(mask).astype(np.uint64)

    def _delims(self) -> np.ndarray:
        return np.asarray(
            self.wt.select(self.DELIM, np.arange(self.nblocks, dtype=np.uint64)), dtype=np.int64
        )

    def decode(self, out: np.ndarray | None = None) -> np.ndarray:
        """All operand codes, retrieved the way the flag says (extract or access)."""
        dt = self.code_dtype
        if out is None:
            out = np.empty(self.n, dtype=dt)
        if self.n == 0:
            return out
        total = self.n + self.nblocks + 2
        if self.form == BLOCK:
            seq = self.wt.extract(1, total - 1)
            if self.block_len:
                out.reshape(self.nblocks, self.block_len)[...] = seq.reshape(
                    self.nblocks, self.block_len + 1
                )[:, : self.block_len]
            else:
                keep = np.ones(seq.size, dtype=bool)
                keep[self._delims() - 1] = False
                out[...] = seq[keep]
        else:
            pos = self._operand_positions()
            for s in range(0, self.n, _ACCESS_CHUNK):
                out[s : s + _ACCESS_CHUNK] = self.wt.access(pos[s : s + _ACCESS_CHUNK])
        return out

    def body_span(self, j0: int = 0, j1: int | None = None) -> tuple[int, int]:
        """Symbol positions ``[start, end)`` of blocks ``j0 .. j1-1`` *with* their delimiters."""
        j1 = self.nblocks if j1 is None else int(j1)
        j0 = int(j0)
        if j0 == 0 and j1 == self.nblocks and self._whole is not None:
            return self._whole  # the fused kernels' every call: two selects saved
        if not 0 <= j0 <= j1 <= self.nblocks:
            raise IndexError(f"RAS: block range [{j0}, {j1}) out of range (0..{self.nblocks})")
        if j0 == j1:
            return (1, 1) if j0 == 0 else (self.block_span(j0 - 1)[1] + 1,) * 2
        if self.block_len:  # fixed-length blocks: positions by arithmetic
            L = self.block_len + 1
            return 1 + j0 * L, 1 + j1 * L
        span = self.block_span(j0)[0], self.block_span(j1 - 1)[1] + 1
        if j0 == 0 and j1 == self.nblocks:
            self._whole = span
        return span

    def body(self, j0: int = 0, j1: int | None = None, out: np.ndarray | None = None):
        """Operand codes of blocks ``j0 .. j1-1``, each block followed by its ``DELIM``.

        One bulk ``extract`` whatever the form (no per-operand access, no delimiter
        removal): the stream fused kernels walk, where a delimiter closes a block. *out*, if
        given, is a C-contiguous array of the tree's symbol dtype with room for the span
        (a reusable workspace); the returned array is a view of it.
        """
        start, end = self.body_span(j0, j1)
        m = end - start
        if out is not None:
            if out.ndim != 1 or out.size < m:
                raise ValueError(f"RAS.body: out holds {out.size} symbols, need {m}")
            out = out[:m]
        if m == 0:
            return out if out is not None else np.empty(0, dtype=self.code_dtype)
        return self.wt.extract(start, end, out=out)

    def block_lengths(self) -> np.ndarray:
        if self.block_len:
            return np.full(self.nblocks, self.block_len, dtype=np.int64)
        if not self.nblocks:
            return np.zeros(0, dtype=np.int64)
        d = self._delims()
        starts = np.concatenate([[1], d[:-1] + 1])
        return d - starts

    # ---- text (paper Figure 1) ----------------------------------------------------------
    def symbols(self) -> np.ndarray:
        """The whole stored sequence (flag, operands, delimiters, end)."""
        return self.wt.extract(0, self.n + self.nblocks + 2)

    def to_text(self, fmt=None, *, max_symbols: int = 400) -> str:
        """Readable form: ``<B> [c c c] [c c] #`` or ``<E> |c c c|c c| #``.

        *fmt* maps an operand index and its code to a string (default: the code).
        """
        seq = self.symbols()
        block = int(seq[0]) == self.FLAG_BLOCK
        out = ["<B>" if block else "<E>"]
        groups = []
        cur: list[str] = []
        i = 0
        shown = 0
        for s in seq[1:-1].tolist():
            if shown >= max_symbols:
                cur.append("...")
                break
            shown += 1
            if s == self.DELIM:
                groups.append(" ".join(cur))
                cur = []
            else:
                cur.append(fmt(i, s) if fmt else str(s))
                i += 1
        if cur:
            groups.append(" ".join(cur))
        if block:
            out.extend(f"[{g}]" for g in groups)
        elif groups:
            out.append("|" + "|".join(groups) + "|")
        out.append("#")
        return " ".join(out)

    def __repr__(self) -> str:
        head = f"RAS(form={self.form!r}, operands={self.n}, blocks={self.nblocks}, k={self.k}"
        if self.n <= 64:
            return head + f"):\n  {self.to_text()}"
        return head + f", nbytes={self.nbytes})"

    # ---- serialization --------------------------------------------------------------------
    def to_parts(self) -> tuple[dict, dict[str, np.ndarray]]:
        """``(meta, arrays)``: the tree's sections without its rank/select index (wavelet
        format 1.3), which :meth:`from_parts` rebuilds from the bits in O(n), as fast as
        checking a stored one; the file is 0.5% of the tree bits smaller, and a tree of a
        few hundred symbols loses most of its fixed size. Parts with the index (files
        written before) are read too."""
        wmeta, secs = self.wt._to_parts(store_index=False)
        meta = {
            "k": self.k,
            "nblocks": self.nblocks,
            "n": self.n,
            "block_len": self.block_len,
            "wt": [int(m) for m in wmeta],
        }
        parts = dict(secs)
        ctl = _control_positions(parts.get("SYMC"), self.k)
        if ctl is not None:  # the symbol order follows from the control symbols' places
            meta["ctl"] = ctl
            del parts["SYMC"]
        meta["tags"] = list(parts)
        return meta, parts

    @classmethod
    def from_parts(cls, meta: dict, arrays: dict[str, np.ndarray]) -> RAS:
        try:
            k, nb, n, L = (meta[x] for x in ("k", "nblocks", "n", "block_len"))
            wmeta = list(meta["wt"])
            tags = list(meta["tags"])
        except (KeyError, TypeError, ValueError) as e:
            raise RASError(f"RAS: bad meta ({e})") from None
        if not all(type(v) is int for v in (k, nb, n, L, *wmeta)):  # no floats, bools, None
            raise RASError("RAS: bad meta (sizes must be integers)")
        if min(k, nb, n, L) < 0 or (L and nb * L != n):
            raise RASError("RAS: inconsistent sizes in meta")
        if set(tags) != set(arrays):
            raise RASError(f"RAS: expected parts {tags}, got {sorted(arrays)}")
        sections = {t: arrays[t] for t in tags}
        if "ctl" in meta:
            if "SYMC" in sections:
                raise RASError("RAS: both a symbol order and its control places")
            sections["SYMC"] = _symbol_order(meta["ctl"], k)
        try:
            wt = wavelet.WaveletTree._from_parts(wmeta, sections)
        except (ValueError, TypeError, IndexError) as e:
            raise RASError(f"RAS: wavelet tree rejected its parts ({e})") from None
        self = cls(wt, k, nb, n, L)
        total = n + nb + 2
        if len(wt) != total:
            raise RASError(f"RAS: tree holds {len(wt)} symbols, expected {total}")
        if int(wt.access(0)) not in (k, k + 1) or int(wt.access(total - 1)) != k + 3:
            raise RASError("RAS: flag or end symbol missing")
        if int(wt.rank(k + 2, total)) != nb:
            raise RASError("RAS: delimiter count does not match the block count")
        return self


def _control_positions(symc, k: int):
    """Where the control symbols ``k .. k+3`` stand in a tree's canonical symbol order
    *symc* (-1: absent), when the operand codes ``0 .. k-1`` all occur there in increasing
    order (codes are numbered by decreasing frequency, so their code lengths, and hence
    their canonical order, follow the numbering; ties can break it); else None. The order is
    then :func:`_symbol_order` of these four numbers: a RAS of ``k`` codes stores them in
    place of ``k + 3`` bytes (file format 5)."""
    if symc is None or symc.ndim != 1:
        return None
    s = symc.astype(np.int64)
    ops = s[s < k]
    if ops.size != k or (k and not (ops == np.arange(k)).all()):
        return None
    pos = [-1] * 4
    for i, v in enumerate(s.tolist()):
        if v >= k:
            if v > k + 3 or pos[v - k] != -1:
                return None
            pos[v - k] = i
    return pos


def _symbol_order(ctl, k: int) -> np.ndarray:
    """The canonical symbol order (a tree's SYMC section) from :func:`_control_positions`'
    four places; RASError when they are not four distinct places among the symbols."""
    if (not isinstance(ctl, list) or len(ctl) != 4
            or not all(type(p) is int and p >= -1 for p in ctl)):
        raise RASError(f"RAS: bad control places {ctl!r}")
    placed = [p for p in ctl if p >= 0]
    sigma = k + len(placed)
    if len(set(placed)) != len(placed) or any(p >= sigma for p in placed):
        raise RASError(f"RAS: bad control places {ctl!r}")
    order = np.empty(sigma, dtype=smallest_uint(k + 3))
    mask = np.ones(sigma, dtype=bool)
    for j, p in enumerate(ctl):
        if p >= 0:
            order[p] = k + j
            mask[p] = False
    order[mask] = np.arange(k)
    return order
