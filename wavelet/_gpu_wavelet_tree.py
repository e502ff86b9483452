"""DeviceWaveletTree: the GPU twin of WaveletTree (kernels in cuda/wavelet_tree.cu).

Private module; :class:`DeviceWaveletTree` is re-exported by :mod:`wavelet.cuda`.
CuPy is imported only when a device object is made. :func:`tree_tables` (the two
small derived tables the kernels read) needs only numpy and the C core, so the
CPU emulation tests build them exactly as an upload does.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ._core import check as _check
from ._core import lib
from ._gpu_bitvector import _check_bad, as_device_queries, upload_sections
from ._gpu_fields import as_device_out, check_bad, check_parts, float_spec
from ._wavelet_tree import _count_operands as count_operands
from ._wseq import BV_TAGS, u64ptr, u64wptr
from .cuda import _module as _m

__all__ = ["DeviceWaveletTree", "tree_tables", "count_operands"]

_U64_MAX = (1 << 64) - 1
_ALIGN = 512  # WV_LEVEL_ALIGN
T = 34  # WV_WT_T: columns of the level table
NW = 8  # WV_WT_NW: u64 per node record
OFF, BASE, NACT, FIRST, CNT, IDX = range(6)


def _host_rank1(wt, pos: np.ndarray) -> np.ndarray:
    pos = np.ascontiguousarray(pos, dtype=np.uint64)
    out = np.empty(pos.size, dtype=np.uint64)
    if pos.size:
        from ._core import ffi

        bad = ffi.new("size_t *")
        _check(lib.wv_bv_rank1_batch(wt._lb.bv, u64ptr(pos), pos.size, u64wptr(out), bad),
               "to_device")
    return out


def tree_tables(wt, max_nodes: int | None = None):
    """The derived tables of a host :class:`~wavelet.WaveletTree` (layout in
    cuda/wavelet_tree.cu): ``tab`` (6 x 34 uint64: off, base, nact, first, cnt,
    idx), and ``(node, lvstart)`` -- the internal nodes (``V x 8`` uint64, level
    by level in prefix order) and the index of each level's first node (L + 1) --
    or ``None`` when the tree has more than *max_nodes* internal nodes (default
    ``max(2**16, n // 512)``, so the table stays under one bit per element).
    """
    syms, skey, spos, cnt, nact = wt._tabs
    n, L = wt._n, wt._nlevels
    tab = np.zeros((6, T), dtype=np.uint64)
    off = np.zeros(T, dtype=np.uint64)
    for d in range(L):
        off[d + 1] = int(off[d]) + -(-int(nact[d]) // _ALIGN) * _ALIGN
    tab[OFF] = off
    tab[BASE, : L + 1] = _host_rank1(wt, off[: L + 1])
    tab[NACT, : L + 1] = nact
    code = k = 0
    for ln in range(1, T):  # canonical code tables, as wt_canon in wavelet_tree.c
        if ln <= L:
            code <<= 1
            tab[FIRST, ln], tab[IDX, ln], tab[CNT, ln] = code, k, int(cnt[ln])
            code += int(cnt[ln])
            k += int(cnt[ln])
        else:
            tab[FIRST, ln], tab[IDX, ln] = _U64_MAX, k
    if max_nodes is None:
        max_nodes = max(1 << 16, n // 512)
    first, cnts, idx = tab[FIRST], tab[CNT], tab[IDX]
    rows, lvstart = [], [0]
    cur = (np.array([0], np.uint64), np.array([n], np.uint64), np.array([0], np.uint64)) \
        if n else (np.zeros(0, np.uint64),) * 3
    total = 0
    for d in range(L):
        s, e, pre = cur
        k = s.size
        total += k
        if total > max_nodes:
            return tab, None
        lvstart.append(total)
        if not k:
            cur = (s, e, pre)
            continue
        r = _host_rank1(wt, np.concatenate([s, e]) + off[d]) - tab[BASE, d]
        r1s, r1e = r[:k], r[k:]
        z = (e - s) - (r1e - r1s)
        c = nact[d] - nact[d + 1]
        ln = d + 1
        ns = np.stack([s, s + z], axis=1)  # (k, 2): child 0, child 1
        ne = np.stack([s + z, e], axis=1)
        q = np.stack([pre << np.uint64(1), (pre << np.uint64(1)) | np.uint64(1)], axis=1)
        leaf = (q - first[ln]) < cnts[ln]  # uint64 wrap-around, as in C
        empty = ne == ns
        inner = ~leaf & ~empty
        ch = np.zeros((k, 2), dtype=np.uint64)
        ch[leaf] = idx[ln] + (q[leaf] - first[ln])
        ch[inner] = np.uint64(total) + np.arange(int(inner.sum()), dtype=np.uint64)
        flags = ((leaf | empty)[:, 0].astype(np.uint64) | ((leaf | empty)[:, 1].astype(np.uint64)
                 << np.uint64(1)) | np.uint64(d << 8))
        rows.append(np.stack([s, e, r1s, e - r1e, ch[:, 0], ch[:, 1], flags, pre], axis=1))
        cur = (ns[inner] - c, ne[inner] - c, q[inner])
    node = np.concatenate(rows).astype(np.uint64) if rows else np.zeros((0, NW), np.uint64)
    return tab, (np.ascontiguousarray(node.reshape(-1, NW)), np.array(lvstart, dtype=np.int64))


def _ctx(stream):
    return stream if stream is not None else contextlib.nullcontext()


def _idx_dtype(sigma: int):
    return np.dtype(np.uint8 if sigma <= 256 else np.uint16 if sigma <= 65536 else np.uint32)


class DeviceWaveletTree:
    """A :class:`~wavelet.WaveletTree` (balanced or Huffman-shaped) in GPU memory.

    Made by :meth:`wavelet.WaveletTree.to_device`: the serialized sections (level
    bitvector and code tables) are uploaded unchanged, plus two small derived
    tables (per level, and per internal node; see ``cuda/wavelet_tree.cu``).

    Queries take integer arrays (CuPy, numpy or lists; any shape) and return CuPy
    arrays, computed on the current CuPy stream (``with wavelet.cuda.torch_stream():``
    puts them on torch's). ``check=True`` (default) raises ``IndexError`` for the
    first bad query, as the host does, which synchronizes once; ``check=False``
    never synchronizes (bad queries then give ``2**64-1``, truncated to the dtype).

    Bulk decode (:meth:`extract`, :meth:`decode`, :meth:`decode_float`) runs level
    by level bottom-up, one bandwidth-bound pass per level, when the tree has at
    most ``max(2**16, n/512)`` internal nodes (always the case for Huffman trees
    over exponent or dictionary codes); otherwise, and for ranges shorter than
    the number of nodes, it uses point access per element.
    """

    __slots__ = ("_n", "_L", "_sigma", "_dtype", "_udt", "_shape", "_a", "_tab", "_tabh",
                 "_node", "_lvstart", "_lvs", "_full", "_idx", "_device", "__weakref__")

    @classmethod
    def from_host(cls, wt, device=None, *, max_nodes: int | None = None) -> DeviceWaveletTree:
        cp = _m._cupy()
        meta, secs = wt._device_parts()
        self = cls.__new__(cls)
        self._n, self._L, self._sigma = int(meta[0]), int(meta[1]), int(meta[2])
        self._shape = wt.shape
        self._dtype = np.dtype(wt.dtype)
        self._udt = np.dtype(f"u{self._dtype.itemsize}")
        self._idx = _idx_dtype(self._sigma)
        tabh, nodes = tree_tables(wt, max_nodes)
        self._tabh = tabh
        with cp.cuda.Device(device) as dev:
            self._device = dev.id
            self._a = upload_sections(secs, dev.id)
            self._tab = cp.asarray(tabh.reshape(-1))
            self._node = self._lvstart = self._lvs = self._full = None
            if nodes is not None and self._n:
                node, lvstart = nodes
                self._node = cp.asarray(node.reshape(-1))
                self._lvstart = [int(x) for x in lvstart]
                counts = np.diff(lvstart)
                lvs = np.repeat(lvstart[:-1], counts).astype(np.int64)
                self._lvs = cp.asarray(lvs)
                s = cp.asarray(np.ascontiguousarray(node[:, 0]))
                c = cp.asarray(np.ascontiguousarray(node[:, 1] - node[:, 0]))
                self._full = (s, s, c)  # A = O = s, C = e - s: the whole tree
        for t in BV_TAGS:  # keep a valid pointer for empty sections
            if self._a[t].size == 0:
                self._a[t] = cp.zeros(1, dtype=cp.uint64)
        return self

    # ---- properties ---------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    @property
    def dtype(self) -> np.dtype:
        """dtype of :meth:`access` / :meth:`extract` results (the host tree's dtype)."""
        return self._dtype

    @property
    def shape(self) -> str:
        return self._shape

    @property
    def nlevels(self) -> int:
        return self._L

    @property
    def nsymbols(self) -> int:
        return self._sigma

    @property
    def device(self):
        return _m._cupy().cuda.Device(self._device)

    @property
    def nbytes(self) -> int:
        """Device bytes: uploaded sections plus the derived tables."""
        extra = [self._tab, self._node, self._lvs, *(self._full[1:] if self._full else ())]
        return sum(int(a.nbytes) for a in self._a.values()) + sum(
            int(a.nbytes) for a in extra if a is not None)

    @property
    def bulk_decode(self) -> bool:
        """True when :meth:`extract` uses the level-by-level decode (node table present)."""
        return self._node is not None

    def __repr__(self) -> str:
        return (f"DeviceWaveletTree(n={self._n}, shape={self._shape!r}, dtype={self._dtype}, "
                f"nsymbols={self._sigma}, nlevels={self._L}, device={self._device})")

    # ---- point queries ----------------------------------------------------------------
    def _bv(self):
        a = self._a
        return a["WRDS"], a["BLKS"], a["SUPR"]

    def access(self, i, *, check: bool = True, stream=None):
        """Symbols at positions *i* (CuPy array of :attr:`dtype`, shape of *i*)."""
        cp = _m._cupy()
        with self.device, _ctx(stream):
            q, shape = as_device_queries(i, "access")
            out = cp.empty(q.size, dtype=self._udt)
            if q.size:
                self._access_into(q, out, check)
            return out.view(self._dtype).reshape(shape)

    def _access_into(self, q, out, check):
        cp = _m._cupy()
        bad = cp.full(1, _U64_MAX, dtype=cp.uint64)
        fn = _m.function("wavelet_tree.cu", _m.wt_access_kernel_name(out.dtype.itemsize))
        grid, block = _m.launch_config(q.size)
        fn((grid,), (block,), (*self._bv(), self._tab, np.uint32(self._L), np.uint64(self._n),
                               self._a["SYMS"], q, np.uint64(q.size), out, bad))
        if check:
            _check_bad(bad, "access")

    def _sym_pos(self, c, i, op):
        """(symbols, positions, shape): broadcast, flat uint64 CuPy arrays. Negative
        symbols raise ValueError (as on the host); negative positions wrap to huge
        ones and are reported out of range by the kernel."""
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

    def rank(self, c, i, *, check: bool = True, stream=None):
        """Occurrences of ``c`` in ``[0, i)`` (arrays broadcast; uint64 CuPy array).
        Symbols that do not occur have rank 0; ``i > len`` raises IndexError."""
        cp = _m._cupy()
        with self.device, _ctx(stream):
            cc, q, shape = self._sym_pos(c, i, "rank")
            out = cp.empty(q.size, dtype=cp.uint64)
            if q.size:
                a = self._a
                bad = cp.full(1, _U64_MAX, dtype=cp.uint64)
                fn = _m.function("wavelet_tree.cu", "wv_wt_rank_k")
                grid, block = _m.launch_config(q.size)
                fn((grid,), (block,), (*self._bv(), self._tab, np.uint32(self._L),
                                       np.uint64(self._n), a["SKEY"], a["SPOS"],
                                       np.uint64(self._sigma), cc, q, np.uint64(q.size), out,
                                       bad))
                if check:
                    _check_bad(bad, "rank")
            return out.reshape(shape)

    def select(self, c, k, *, check: bool = True, stream=None):
        """Position of the ``k``-th (0-based) occurrence of ``c`` (uint64 CuPy array);
        IndexError if ``c`` occurs ``k`` times or fewer."""
        cp = _m._cupy()
        with self.device, _ctx(stream):
            cc, q, shape = self._sym_pos(c, k, "select")
            out = cp.empty(q.size, dtype=cp.uint64)
            if q.size:
                a = self._a
                bad = cp.full(1, _U64_MAX, dtype=cp.uint64)
                fn = _m.function("wavelet_tree.cu", "wv_wt_select_k")
                grid, block = _m.launch_config(q.size)
                fn((grid,), (block,), (*self._bv(), a["SEL1"], a["SEL0"],
                                       np.uint64(a["WRDS"].size), np.uint64(a["BLKS"].size),
                                       self._tab, np.uint32(self._L), np.uint64(self._n),
                                       a["SKEY"], a["SPOS"], np.uint64(self._sigma), cc, q,
                                       np.uint64(q.size), out, bad))
                if check:
                    _check_bad(bad, "select")
            return out.reshape(shape)

    # ---- bulk decode ---------------------------------------------------------------------
    def _use_levels(self, m: int) -> bool:
        return self._node is not None and m >= self._lvstart[-1]

    def _plan(self, l: int, r: int):
        """(A, O, C) device arrays of the compact layout for [l, r)."""
        cp = _m._cupy()
        if l == 0 and r == self._n:
            return self._full
        nn = self._lvstart[-1]
        A = cp.empty(nn, dtype=cp.uint64)
        C = cp.empty(nn, dtype=cp.uint64)
        fn = _m.function("wavelet_tree.cu", "wv_wt_plan_k")
        grid, block = _m.launch_config(nn, threads=128)
        fn((grid,), (block,), (*self._bv(), self._tab, self._node, np.uint64(nn), np.uint64(l),
                               np.uint64(r), A, C))
        excl = cp.cumsum(C) - C
        O = excl - excl[self._lvs]  # per-level exclusive prefix sums
        return A, O, C

    def _run_levels(self, l: int, r: int, final_expr: str, final_args: tuple):
        """Level passes L-1 .. 1 into scratch, then the level-0 kernel *final_expr*
        with (next, *final_args) after the common arguments."""
        cp = _m._cupy()
        full = l == 0 and r == self._n
        A, O, C = self._plan(l, r)
        L, m = self._L, r - l
        nact = [int(x) for x in self._tabh[NACT, : L + 1]]
        cap = (lambda d: nact[d]) if full else (lambda d: m)
        bufs = [None, None]
        if L > 1:
            bufs[1] = cp.empty(max(cap(1), 1), dtype=self._idx)
            bufs[0] = cp.empty(max(cap(2), 1), dtype=self._idx) if L > 2 else bufs[1]
        a = self._a
        tab = self._tabh

        def common(d):
            return (a["WRDS"], a["BLKS"], a["SUPR"], np.uint64(a["WRDS"].size),
                    np.uint64(tab[OFF, d]), np.uint64(tab[BASE, d]), self._node, A, O, C,
                    np.uint64(self._lvstart[d]), np.uint64(self._lvstart[d + 1]),
                    np.uint64(nact[d] - nact[d + 1]))

        lvk = _m.function("wavelet_tree.cu", _m.wt_level_kernel_name(self._idx.itemsize))
        for d in range(L - 1, 0, -1):
            dst = bufs[d & 1]
            nxt = bufs[(d + 1) & 1] if d + 1 < L else dst
            grid, block = _m.launch_config(cap(d), per_thread=64)
            lvk((grid,), (block,), (*common(d), nxt, dst))
        nxt = bufs[1] if L > 1 else a["WRDS"]  # level 0 of a 1-level tree reads no next
        grid, block = _m.launch_config(cap(0), per_thread=64)
        _m.function("wavelet_tree.cu", final_expr)((grid,), (block,),
                                                   (*common(0), nxt, *final_args))

    def extract(self, start: int = 0, stop: int | None = None, *, out=None, stream=None):
        """Symbols ``[start, stop)`` into *out* (CuPy array of :attr:`dtype`, or of the
        unsigned type of its width) or a new array. Level-by-level bulk decode."""
        cp = _m._cupy()
        stop = self._n if stop is None else int(stop)
        start = int(start)
        if not 0 <= start <= stop <= self._n:
            raise IndexError(f"extract: range [{start}, {stop}) is not inside [0, {self._n}]")
        m = stop - start
        with self.device, _ctx(stream):
            if out is None:
                res = cp.empty(m, dtype=self._udt)
            else:
                if not isinstance(out, cp.ndarray):
                    raise TypeError("extract: out must be a CuPy array")
                if out.dtype not in (self._dtype, self._udt):
                    raise TypeError(f"extract: out must have dtype {self._dtype}, got {out.dtype}")
                if out.shape != (m,) or not out.flags.c_contiguous:
                    raise ValueError(f"extract: out must be C-contiguous with shape ({m},)")
                res = out.view(self._udt)
            if m:
                if self._use_levels(m):
                    expr = _m.wt_sym_kernel_name(self._idx.itemsize, self._udt.itemsize)
                    self._run_levels(start, stop, expr, (self._a["SYMS"], res))
                else:
                    self._access_into(cp.arange(start, stop, dtype=cp.uint64), res, True)
            return out if out is not None else res.view(self._dtype)

    def decode(self, *, out=None, stream=None):
        """The whole sequence (same as ``extract()``)."""
        return self.extract(out=out, stream=stream)

    def decode_float(self, table, exp_bits: int, mant_bits: int, planes, top=None, *,
                     out=None, start: int = 0, stop: int | None = None, lead: int = 0,
                     block: int = 0, nelems: int | None = None, check: bool = True,
                     stream=None):
        """Decode exponent codes and rebuild float words in one fused pass.

        The tree holds codes into *table*; *planes*/*top* hold the raw sign and
        mantissa bits: dnn_adapter's FloatCodec parts, as for
        :func:`wavelet.cuda.merge_float_fields` (same result bits; any split with
        ``1 + exp_bits + mant_bits`` in (16, 32, 64)). The last level pass writes
        the words directly, so codes never go to memory.

        Tree positions ``[start, stop)`` are decoded. With ``lead``/``block`` the
        tree is a RAS: its first *lead* symbols and every ``(block+1)``-th after
        them are not operands (flag, delimiters) and are skipped, as are operands
        past *nelems* (the end marker); element ``i`` is the i-th operand, its raw
        bits ``planes[:, i]``. *out* (CuPy, or a DLPack integer tensor such as
        ``torch_tensor.view(torch.int16)``, written in place) receives the
        operands of ``[start, stop)`` in order.

        Raises
        ------
        WaveletError
            A code outside *table*, or a table entry wider than *exp_bits*.
        ValueError, TypeError, IndexError
            Inconsistent parts, out, or range (checked before any launch).
        """
        cp = _m._cupy()
        op = "decode_float"
        word, nplanes, rem = float_spec(exp_bits, mant_bits, op)
        stop = self._n if stop is None else int(stop)
        start, lead, block = int(start), int(lead), int(block)
        if not 0 <= start <= stop <= self._n:
            raise IndexError(f"{op}: range [{start}, {stop}) is not inside [0, {self._n}]")
        if lead < 0 or block < 0:
            raise ValueError(f"{op}: lead and block must be >= 0")
        with self.device, _ctx(stream):
            if nelems is None and nplanes == 0 and getattr(planes, "ndim", 1) != 2:
                nelems = count_operands(self._n, lead, block)  # pass nelems for a RAS
            table, planes, top, nel = check_parts(table, exp_bits, planes, top, nelems, nplanes,
                                                  rem, op)
            if nel > count_operands(self._n, lead, block):
                raise ValueError(f"{op}: {nel} elements but the tree holds fewer operands")
            e0 = min(count_operands(start, lead, block), nel)
            e1 = min(count_operands(stop, lead, block), nel)
            res = as_device_out(out, e1 - e0, word, op)
            m = stop - start
            if e1 > e0:
                bad = cp.full(1, _U64_MAX, dtype=cp.uint64)
                args = (self._a["SYMS"], table, np.uint64(table.size), np.uint32(mant_bits),
                        planes, np.uint32(nplanes), top, np.uint32(rem), np.uint64(nel),
                        np.uint64(start), np.uint64(lead), np.uint64(block), np.uint64(e0), res,
                        bad)
                if self._use_levels(m):
                    expr = _m.wt_float_kernel_name(self._idx.itemsize, word.itemsize)
                    self._run_levels(start, stop, expr, args)
                else:  # few elements or a huge alphabet: codes by access, then merge
                    codes = self.extract(start, stop).astype(cp.uint64)
                    self._merge_codes(codes, args, start, stop, lead, block, nel, e0)
                if check:
                    check_bad(bad, op, "tree position")
            return out if out is not None else res

    def _merge_codes(self, codes, args, start, stop, lead, block, nel, e0):
        """Fallback of decode_float: operand codes picked with array ops, merged by
        the fields kernel (same checks and result)."""
        cp = _m._cupy()
        syms, table, ntable, mant_bits, planes, nplanes, top, rem = args[:8]
        res, bad = args[13], args[14]
        p = cp.arange(start, stop, dtype=cp.int64)
        q = p - lead
        keep = q >= 0
        if block:
            keep &= (q % (block + 1)) != block
            i = (q // (block + 1)) * block + q % (block + 1)
        else:
            i = q
        keep &= i < nel
        c = codes[keep]
        if c.size and int(c.max()) >= int(ntable):
            bpos = int(p[keep][c >= int(ntable)][0])
            bad[...] = bpos
            res[...] = 0
            return
        pl = planes if int(nplanes) else cp.zeros(0, cp.uint8)
        idx = i[keep]
        # gather this range's raw bits into a compact FloatCodec layout, then merge
        sub_planes = pl.reshape(int(nplanes), -1)[:, idx] if int(nplanes) else pl
        sub_top = None
        if int(rem):
            r_ = int(rem)
            bits = cp.unpackbits(top, bitorder="little")[: nel * r_].reshape(nel, r_)[idx]
            sub_top = cp.packbits(bits.reshape(-1), bitorder="little")
        fn = _m.function("fields.cu",
                         _m.fields_kernel_name(2, res.dtype.itemsize))
        n = int(c.size)
        c16 = c.astype(cp.uint16)
        sp = cp.ascontiguousarray(sub_planes).reshape(-1) if int(nplanes) else cp.zeros(1, cp.uint8)
        st = sub_top if sub_top is not None else cp.zeros(1, cp.uint8)
        grid, blk = _m.launch_config(n, per_thread=4)
        fn((grid,), (blk,), (c16, np.uint64(n), table, ntable, mant_bits, sp, nplanes, st, rem,
                             res, bad))
        # the fields kernel reports element indices; map them back to tree positions
        b = int(bad.get()[0])
        if b != _U64_MAX:
            bad[...] = int(p[keep][b])
