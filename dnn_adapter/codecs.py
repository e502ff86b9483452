"""Exact tensor codecs: a tensor's bits -> symbol streams in RAS wavelet trees + raw side arrays.

Every codec follows the numcodecs shape: a ``codec_id``, ``encode(tensor_or_array)`` returning
the compressed *parts* (an :class:`Encoded`), ``decode(parts, out=None)``, and JSON-only
``get_config()`` / ``from_config()``; codecs are found by id in :data:`registry`.

Codecs (all bit-exact; they compare and decode on unsigned-integer views, never float ops):

``float``   IEEE-like floats: the exponent field becomes a code stream in a Huffman-shaped
            wavelet tree (the low-entropy part); sign and mantissa are stored raw, packed
            (fp32: 8-bit exponent + 24 raw bits, fp16: 5 + 11, bf16: 8 + 8, fp64: 11 + 53).
``dict``    few distinct values (quantized / clustered weights, int8/uint8, torch quantized
            tensors' ``int_repr``): codes in a Huffman wavelet tree + a table of bit patterns.
``sparse``  mostly-zero tensors (pruned): the paper's tuple extension -- per block, the
            distance to the previous non-zero (a code stream in its own RAS) and the value
            (stored with the best of ``float``/``dict``/``raw`` over the non-zeros, in a RAS
            aligned on the same blocks). "Zero" means the all-zero bit pattern (+0.0); a
            ``-0.0`` is a value like any other -- or, when smaller (a tensor pruned by
            ``torch.nn.utils.prune``, whose mask product leaves ``-0.0``), zeros of either
            sign with one stored sign bit each.
``raw``     fallback: the bits as they are.

:func:`encode_best` tries every applicable codec and keeps the smallest whose decode
reproduces the input bit for bit.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

import wavelet

from ._bits import (
    QUANT_REPR,
    DType,
    bits_of,
    crc32,
    dtype_info,
    dtype_name,
    empty_like_bits,
    is_torch,
    out_bits,
    smallest_uint,
    torch,
)
from .ras import BLOCK, ELEMENT, RAS

__all__ = [
    "Codec",
    "CodecError",
    "DictCodec",
    "Encoded",
    "FloatCodec",
    "RawCodec",
    "SparseCodec",
    "encode_best",
    "get_codec",
    "get_decode_threads",
    "set_decode_threads",
    "register_codec",
    "registry",
]

FORMAT_VERSION = 1


class CodecError(ValueError):
    """A codec does not apply, or its parts are corrupt/inconsistent."""


class NotApplicable(CodecError):
    """This codec cannot represent the given tensor (the chooser skips it)."""


# ---------------------------------------------------------------------------------------------
@dataclass
class Encoded:
    """The compressed parts of one tensor.

    ``meta`` is JSON-only; ``arrays`` are raw numpy buffers; ``ras`` are the runtime-accessible
    sequences (each one wavelet tree); ``children`` are nested encodings (the values of a
    sparse tensor).
    """

    codec_id: str
    meta: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    ras: dict[str, RAS] = field(default_factory=dict)
    children: dict[str, Encoded] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes of every buffer plus the JSON metadata."""
        n = sum(int(a.nbytes) for a in self.arrays.values())
        n += sum(r.nbytes for r in self.ras.values())
        n += sum(c.nbytes for c in self.children.values())
        return n + len(json.dumps(self.meta, separators=(",", ":")))

    @property
    def form(self) -> str | None:
        for r in self.ras.values():
            return r.form
        for c in self.children.values():
            return c.form
        return None

    def describe(self) -> str:
        """Short codec description, e.g. ``sparse(dict)``."""
        if self.children:
            return (
                f"{self.codec_id}(" + ",".join(c.describe() for c in self.children.values()) + ")"
            )
        return self.codec_id

    # ---- flat form (for buffers on modules and files) ------------------------------------
    def flatten(self, prefix: str = "") -> tuple[dict, dict[str, np.ndarray]]:
        """``(tree, buffers)``: a JSON tree and named raw arrays; inverse of :meth:`unflatten`."""
        bufs: dict[str, np.ndarray] = {}
        tree: dict = {"codec": self.codec_id, "meta": self.meta, "arrays": [], "ras": {}}
        for k, a in self.arrays.items():
            bufs[prefix + k] = a
            tree["arrays"].append(k)
        for k, r in self.ras.items():
            rmeta, parts = r.to_parts()
            for t, a in parts.items():
                bufs[f"{prefix}{k}.{t}"] = a
            tree["ras"][k] = rmeta
        if self.children:
            tree["children"] = {}
            for k, c in self.children.items():
                ctree, cbufs = c.flatten(f"{prefix}{k}/")
                tree["children"][k] = ctree
                bufs.update(cbufs)
        return tree, bufs

    @classmethod
    def unflatten(cls, tree: dict, bufs: dict[str, np.ndarray], prefix: str = "") -> Encoded:
        try:
            cid = tree["codec"]
            meta = tree["meta"]
            arrays = {k: bufs[prefix + k] for k in tree["arrays"]}
            ras = {}
            for k, rmeta in tree["ras"].items():
                parts = {t: bufs[f"{prefix}{k}.{t}"] for t in rmeta["tags"]}
                ras[k] = RAS.from_parts(rmeta, parts)
            children = {
                k: cls.unflatten(ct, bufs, f"{prefix}{k}/")
                for k, ct in tree.get("children", {}).items()
            }
        except KeyError as e:
            raise CodecError(f"missing part {e}") from None
        except (TypeError, AttributeError) as e:
            raise CodecError(f"malformed parts description ({e})") from None
        if cid not in registry:
            raise CodecError(f"unknown codec id {cid!r}")
        if not isinstance(meta, dict):
            raise CodecError("malformed meta")
        return cls(cid, meta, arrays, ras, children)

    # ---- text ---------------------------------------------------------------------------
    def to_text(self, max_symbols: int = 400) -> str:
        """The RAS in readable form (paper Figure 1), operands shown as values."""
        return get_codec(self.codec_id)._to_text(self, max_symbols)

    def __repr__(self) -> str:
        m = self.meta
        s = f"Encoded({self.describe()}, dtype={m.get('dtype')}, shape={m.get('shape')}"
        s += f", form={self.form}, nbytes={self.nbytes})"
        n = int(np.prod(m.get("shape", [0]) or [1])) if "shape" in m else 0
        if 0 < n <= 64 and self.ras:
            s += "\n  " + self.to_text()
        return s


# ---------------------------------------------------------------------------------------------
registry: dict[str, type[Codec]] = {}


def register_codec(cls):
    """Class decorator: make a codec findable by its ``codec_id``."""
    registry[cls.codec_id] = cls
    return cls


def get_codec(config) -> Codec:
    """A codec instance from an id or a config dict (``{"id": ..., ...}``)."""
    if isinstance(config, str):
        config = {"id": config}
    try:
        cls = registry[config["id"]]
    except KeyError:
        raise CodecError(f"unknown codec {config!r}") from None
    return cls.from_config(config)


def _blocks_for(shape) -> int:
    """Default block length: one block per leading index (row / filter / embedding vector)."""
    n = int(np.prod(shape, dtype=np.int64))
    if n == 0:
        return 0
    if len(shape) >= 2 and shape[0] > 0:
        return n // shape[0]
    return n


_DICT_MAX_VALUES = 4096  # DictCodec's default max_values
SMALL_KERNEL_BLOCK = 128  # block-wise float/dict: kernels shorter than half this are grouped


def _kernel_groups(shape, L: int) -> int:
    """Block length for the block-wise form of a conv weight (3+ dims) whose kernels of *L*
    elements are short: the largest power of two ``m`` of whole kernels dividing the kernel
    count with ``m * L <= SMALL_KERNEL_BLOCK``, times *L*. A depthwise 3x3 kernel is 9
    elements; its delimiter would take a tenth of the RAS's symbols (at 2-bit quantization,
    about a fifth of the layer's size). Blocks stay whole kernels, as the sparse codec's."""
    if len(shape) < 3 or not 0 < L < SMALL_KERNEL_BLOCK // 2:
        return L
    m, rows = 1, int(shape[0])
    while 2 * m * L <= SMALL_KERNEL_BLOCK and rows % (2 * m) == 0:
        m *= 2
    return m * L


def _freq_table(values: np.ndarray):
    """Distinct values sorted by decreasing frequency, and each element's code."""
    uniq, inv, cnt = np.unique(values, return_inverse=True, return_counts=True)
    order = np.argsort(-cnt, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return uniq[order], rank[inv.reshape(-1)]


def _values_list(bits: np.ndarray, dt: DType) -> list:
    if torch is not None and dt.name not in ("bool",):
        t = torch.from_numpy(np.array(bits.view(f"<i{dt.itemsize}"), copy=True))
        return t.view(dt.torch_dtype).to(torch.float64 if dt.is_float else torch.int64).tolist()
    return np.asarray(bits).view(dt.numpy_dtype).tolist()


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class Codec:
    """Base class. Subclasses implement ``_encode_bits`` and ``_decode_bits``."""

    codec_id: ClassVar[str] = ""

    def __init__(self, form: str = BLOCK, index: str = "compact"):
        if form not in (BLOCK, ELEMENT):
            raise ValueError(f"form must be {BLOCK!r} or {ELEMENT!r}")
        if index not in ("fast", "compact"):
            raise ValueError(f"index must be 'fast' or 'compact', got {index!r}")
        self.form = form
        # rank/select index of the RAS trees in memory (files leave it out and the loader
        # rebuilds it): "compact" (0.49% of the tree bits) by default, since layers are
        # decoded in bulk (one rank per tree node); "fast" (4.7%) for faster single-operand
        # access
        self.index = index

    # ---- numcodecs-style API ---------------------------------------------------------------
    def get_config(self) -> dict:
        return {"id": self.codec_id, "form": self.form, "index": self.index}

    @classmethod
    def from_config(cls, config: dict) -> Codec:
        cfg = dict(config)
        cfg.pop("id", None)
        return cls(**cfg)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "id")
        return f"{type(self).__name__}({args})"

    # block-wise conv weights with short kernels get blocks of several kernels
    # (_kernel_groups); the sparse codec groups rows by its own estimate instead
    groups_kernels: ClassVar[bool] = False

    def encode(self, x, *, block_len: int | None = None) -> Encoded:
        """Compress a torch tensor or numpy array; the input is never modified.

        *block_len* sets the RAS block (default: one block per leading index; for the
        block-wise ``float`` and ``dict`` codecs of a conv weight with short kernels, a
        few whole kernels, see :func:`_kernel_groups`).
        """
        qmeta, qarrays = {}, {}
        if is_torch(x) and x.is_quantized:
            qmeta, qarrays = _quant_params(x)
            x = x.int_repr()
        u, dt, shape = bits_of(x)
        if block_len is None:
            block_len = _blocks_for(shape)
            if self.groups_kernels and self.form == BLOCK:
                block_len = _kernel_groups(shape, block_len)
        enc = self._encode_bits(u, dt, block_len)
        enc.meta.update(
            {
                "v": FORMAT_VERSION,
                "dtype": dt.name,
                "shape": list(shape),
                "torch": bool(is_torch(x)),
                "crc32": crc32(u),
            }
        )
        if qmeta:
            enc.meta["quant"] = qmeta
            enc.arrays.update(qarrays)
        return enc

    def _meta_of(self, enc: Encoded):
        """``(dtype info, shape)`` of parts made by this codec, or CodecError."""
        if enc.codec_id != self.codec_id:
            raise CodecError(f"{self.codec_id}: cannot decode parts of codec {enc.codec_id!r}")
        try:
            return dtype_info(enc.meta["dtype"]), tuple(int(s) for s in enc.meta["shape"])
        except (KeyError, TypeError, ValueError) as e:
            raise CodecError(f"{self.codec_id}: bad meta ({e})") from None

    @contextlib.contextmanager
    def _malformed(self):
        """Parts or meta of the wrong type or shape (a missing key, a string for a count)
        found while decoding: a CodecError naming the codec, not a bare KeyError."""
        try:
            yield
        except (KeyError, TypeError, AttributeError, OverflowError, IndexError) as e:
            raise CodecError(f"{self.codec_id}: malformed parts or meta ({e!r})") from None

    def decode(self, enc: Encoded, out=None):
        """Decompress into *out* (torch tensor or numpy array of the right dtype/size) or new."""
        dt, shape = self._meta_of(enc)
        m = enc.meta
        n = int(np.prod(shape, dtype=np.int64))
        quant = m.get("quant")
        if out is None or quant:
            res, ub = empty_like_bits(
                dt, shape, as_torch=bool(m.get("torch")) and torch is not None
            )
        else:
            res, ub = out, out_bits(out, dt)
            if ub.size != n:
                raise ValueError(f"decode: out holds {ub.size} elements, expected {n}")
        with self._malformed():
            self._decode_bits(enc, ub)
        if quant:
            return _make_quantized(res, quant, enc.arrays)
        return res

    def prepare(self, enc: Encoded):
        """A decoder for *enc* checked once: ``f(out)`` decodes into *out* (a tensor or
        array of the right dtype and size), as ``decode(enc, out=out)`` does.

        The parts are validated here, not on every call: the streaming workspace decodes
        the same parts on every forward, where per-call checks cost more than the decode
        of a small layer. Quantized-tensor parts decode as :meth:`decode` does (a new
        quantized tensor is returned, *out* is not used).
        """
        dt, shape = self._meta_of(enc)
        m = enc.meta
        if m.get("quant"):
            return lambda out: self.decode(enc, out=out)
        n = math.prod(shape)
        with self._malformed():
            plan = self._plan_bits(enc, n)
        view = _bit_view(dt, n)

        def run(out):
            plan(view(out))
            return out

        return run

    def prepare_rows(self, enc: Encoded):
        """A decoder of single rows, or None: ``f(out, rows)`` decodes only the rows
        (leading-index slices) *rows* of *enc* into the same rows of *out* (a contiguous
        tensor or array of the full shape and dtype) and leaves the others untouched.

        Available for block-wise float and dictionary encodings with one block per row (the
        default blocks), decoded by tree ranges; None otherwise (sparse, raw, element-wise,
        quantized). *rows* are validated here (integers in range; any order, repeats
        allowed). An embedding lookup uses it to decode only the rows it reads.
        """
        dt, shape = self._meta_of(enc)
        if enc.meta.get("quant") or len(shape) < 1:
            return None
        n = math.prod(shape)
        plan = self._plan_bits(enc, n)
        some = getattr(plan, "some_rows", None)
        if some is None or n == 0 or n // shape[0] != self._block_len(enc):
            return None
        nrows, view = shape[0], _bit_view(dt, n)

        def run(out, rows):
            r = np.unique(np.asarray(rows).reshape(-1))
            if r.size and (r.dtype.kind not in "iu" or r[0] < 0 or r[-1] >= nrows):
                raise IndexError(f"prepare_rows: rows must be integers in [0, {nrows})")
            ub = view(out)
            if r.size * 4 > nrows:  # most rows: one bulk decode is cheaper
                plan(ub)
            else:
                some(ub, r)
            return out

        return run

    def _block_len(self, enc: Encoded) -> int:
        ras = next(iter(enc.ras.values()), None)
        return int(ras.block_len) if ras is not None and ras.block_len else 0

    # ---- to implement ------------------------------------------------------------------------
    def _plan_bits(self, enc: Encoded, n: int):
        """Validate the parts for *n* elements; return ``f(bits_out)`` that decodes them."""
        return lambda out: self._decode_bits(enc, out)

    def _encode_bits(self, u: np.ndarray, dt: DType, block_len) -> Encoded:
        raise NotImplementedError

    def _decode_bits(self, enc: Encoded, out: np.ndarray) -> None:
        raise NotImplementedError

    def _to_text(self, enc: Encoded, max_symbols: int) -> str:
        dt = dtype_info(enc.meta["dtype"])
        if not enc.ras:
            return f"<raw {enc.meta.get('shape')}>"
        m = enc.meta  # a child part (values of a sparse or narrow tensor) has n, no shape
        n = int(np.prod(m["shape"], dtype=np.int64)) if "shape" in m else int(m["n"])
        ub = np.empty(n, dtype=dt.uint)
        self._decode_bits(enc, ub)
        vals = _values_list(ub, dt)
        r = next(iter(enc.ras.values()))
        return r.to_text(lambda i, c: _fmt(vals[i]), max_symbols=max_symbols)


# ---------------------------------------------------------------------------------------------
@register_codec
class FloatCodec(Codec):
    """Exponent (+ top mantissa bits) codes in a Huffman wavelet tree + raw sign/mantissa bits.

    Parts: ``exp`` (RAS of codes), ``exp_table`` (code -> field value), ``raw`` (``nb x n``
    uint8 byte planes of sign|low mantissa), ``raw_top`` (the remaining bits per element,
    bit-packed). ``meta["k"]`` top mantissa bits ride in the coded field with the exponent
    (a joint symbol): for weights whose mantissa's top bits depend on the exponent (most
    trained and initialised weights), and whose exponent stream alone sits near one value
    (where Huffman cannot go below 1 bit), the joint symbol codes closer to the entropy. The
    encoder picks ``k`` in ``0 .. max_joint_bits`` by size (measured below 64K elements,
    estimated above), and takes ``k > 0`` only when it saves at least ``joint_min_gain`` of
    the size. Each joint bit costs decode speed (a deeper tree, and a bit-packed remainder
    instead of whole byte planes), so the default ``max_joint_bits=None`` allows 2 for 32-
    and 64-bit floats and 1 for 16-bit ones: on 1M gaussian weights (``python
    asv_bench/decode_table.py``) fp32 k = 2 gains 0.33% of the size (it reaches the
    exponent-H0 + raw-bits bound) and still decodes at about 1.7 GB/s per thread (that
    machine; on an AMD EPYC Zen 4, 16M gaussian fp32 weights in one process: 5.5 GB/s at
    k = 0, 4.6 at k = 1, 3.8 at k = 2); bf16 k = 1 gains 0.56%, k = 2 another 0.26% at a
    further quarter of the speed.
    """

    codec_id = "float"
    groups_kernels = True

    def __init__(self, form: str = BLOCK, max_joint_bits: int | None = None,
                 joint_min_gain: float = 0.001, index: str = "compact"):
        super().__init__(form, index)
        self.max_joint_bits = None if max_joint_bits is None else int(max_joint_bits)
        self.joint_min_gain = float(joint_min_gain)
        if self.max_joint_bits is not None and not 0 <= self.max_joint_bits <= 8:
            raise ValueError("float: max_joint_bits must be in 0..8")

    def get_config(self):
        return {
            **super().get_config(),
            "max_joint_bits": self.max_joint_bits,
            "joint_min_gain": self.joint_min_gain,
        }

    def _encode_bits(self, u, dt, block_len):
        if not dt.is_float:
            raise NotApplicable(f"float: {dt.name} is not a float type")
        M, E = dt.mant_bits, dt.exp_bits
        kmax = self.max_joint_bits
        if kmax is None:
            kmax = 2 if dt.itemsize >= 4 else 1
        kmax = min(kmax, M, 16 - E)
        if u.size <= _EXACT_K_BELOW:
            # small tensors: the tree's fixed costs (per level and per symbol) dominate the
            # differences, so every k is built and measured
            cands = [self._encode_k(u, dt, block_len, kk) for kk in range(kmax + 1)]
            sizes = [c.nbytes for c in cands]
        else:
            cands, sizes = None, [_estimate_float_bytes(u, E, M, kk)
                                  for kk in range(kmax + 1)]
        k = int(np.argmin(sizes))
        if sizes[k] > sizes[0] * (1.0 - self.joint_min_gain):
            k = 0
        return cands[k] if cands is not None else self._encode_k(u, dt, block_len, k)

    def _encode_k(self, u, dt, block_len, k):
        W, M, E = 8 * dt.itemsize, dt.mant_bits, dt.exp_bits
        ut = u.dtype.type
        eb, mb = E + k, M - k
        field = (u >> ut(mb)) & ut((1 << eb) - 1)
        table, codes = _freq_table(field)
        table = table.astype(np.uint8 if eb <= 8 else np.uint16)  # uint8 since format 5
        raw = (u & ut((1 << mb) - 1)) | ((u >> ut(W - 1)) << ut(mb))
        nfull, rem = divmod(mb + 1, 8)
        planes = np.empty((nfull, u.size), dtype=np.uint8)
        for p in range(nfull):
            planes[p] = (raw >> ut(8 * p)) & ut(0xFF)
        arrays = {"exp_table": table, "raw": planes}
        if rem:
            top = ((raw >> ut(8 * nfull)) & ut((1 << rem) - 1)).astype(np.uint8)
            bits = np.unpackbits(top[:, None], axis=1, bitorder="little")[:, :rem]
            arrays["raw_top"] = np.packbits(bits.reshape(-1), bitorder="little")
        ras = RAS.build(codes, table.size, self.form, _lengths(block_len, u.size),
                        index=self.index)
        meta = {"form": self.form, "nplanes": nfull, "rem": rem, "k": k}
        return Encoded(self.codec_id, meta, arrays, {"exp": ras})

    def _decode_bits(self, enc, out):
        self._plan_bits(enc, out.size)(out)

    def _plan_bits(self, enc, n):
        dt = dtype_info(enc.meta["dtype"])
        try:
            k = int(enc.meta.get("k", 0))
        except (TypeError, ValueError):
            raise CodecError("float: bad joint-bit count") from None
        if not 0 <= k <= dt.mant_bits or dt.exp_bits + k > 16:
            raise CodecError(f"float: bad joint-bit count {k}")
        eb, mb = dt.exp_bits + k, dt.mant_bits - k
        ras, table = enc.ras["exp"], enc.arrays["exp_table"]
        planes = enc.arrays["raw"]
        nfull, rem = divmod(mb + 1, 8)
        if len(ras) != n or planes.shape != (nfull, n) or planes.dtype != np.uint8:
            raise CodecError("float: parts do not match the tensor size")
        if table.dtype not in (np.uint8, np.uint16) or table.size != ras.k:
            raise CodecError("float: bad exponent table")
        table = table.astype(np.uint16)  # a uint8 table since format 5 (k entries: tiny)
        if table.size and int(table.max()) >= 1 << eb:
            raise CodecError("float: bad exponent table")
        if n == 0:
            return lambda out: None
        top = None
        if rem:
            top = enc.arrays["raw_top"]
            if top.dtype != np.uint8 or top.size != (n * rem + 7) // 8:
                raise CodecError("float: bad raw_top part")
        planes = np.ascontiguousarray(planes)
        table = np.ascontiguousarray(table)
        top = top if top is None else np.ascontiguousarray(top)
        rows = None
        if ras.block_len and ras.code_dtype.itemsize <= 2:
            try:
                dec = ras.wt.float_decoder(table, eb, mb, planes, top, lead=1,
                                           block=ras.block_len, nelems=n)
            except wavelet.WaveletError as e:
                raise CodecError(f"float: {e}") from None
            rows = _rows_decoder(ras, dec, n)

        def run(out):
            direct = out.flags.c_contiguous and out.flags.aligned and out.flags.writeable
            flat = out.reshape(-1) if direct else np.empty(n, dtype=out.dtype)
            try:  # in C, straight into the caller's buffer (the layer's workspace) if possible
                if rows is not None:
                    rows(flat)
                else:
                    codes = _operand_codes(ras)
                    if codes.dtype not in (np.uint8, np.uint16):
                        codes = codes.astype(np.uint16)
                    wavelet.merge_float_fields(
                        np.ascontiguousarray(codes), table, eb, mb, planes, top, flat
                    )
            except wavelet.WaveletError as e:
                raise CodecError(f"float: {e}") from None
            if not direct:
                out[...] = flat.reshape(out.shape)

        if rows is not None:
            run.some_rows = _some_rows(ras, dec, "float")
        return run

    def _to_text(self, enc, max_symbols):
        return super()._to_text(enc, max_symbols)


# ---- float decode: chunks of rows, optionally on several threads -----------------------------
# below this many elements per thread, extra decode threads cost more than they save
_MIN_PER_THREAD = 1 << 17
_threads = {"n": 1, "pool": None}


def set_decode_threads(n: int) -> None:
    """Decode each block-wise float tensor on *n* threads (default 1; C releases the GIL)."""
    n = int(n)
    if n < 1:
        raise ValueError("set_decode_threads: n must be >= 1")
    pool = _threads["pool"]
    if pool is not None and pool._max_workers < n:  # too small: replace (else keep it warm)
        pool.shutdown(wait=True)
        _threads["pool"] = None
    _threads["n"] = n


def get_decode_threads() -> int:
    return _threads["n"]


def _pool():
    if _threads["pool"] is None:
        from concurrent.futures import ThreadPoolExecutor

        _threads["pool"] = ThreadPoolExecutor(_threads["n"], thread_name_prefix="dnn-decode")
    return _threads["pool"]


def _by_rows(ras, n: int, call) -> None:
    """Decode a fixed-row RAS in one C call per thread.

    The tree holds ``FLAG, row0, DELIM, row1, DELIM, ..., END``; the fused tree decodes
    (:meth:`wavelet.WaveletTree.decode_float` / ``decode_lookup``) skip the flag, the
    delimiters and the end marker and work in cache-sized chunks, so no code buffer of the
    tensor's size exists. ``call(start, stop, lo, hi)`` decodes tree positions
    ``[start, stop)``, which hold elements ``lo .. hi``. With :func:`set_decode_threads`
    above 1, whole rows are split over the threads (C releases the GIL).
    """
    bl = ras.block_len
    nrows = n // bl
    nt = min(_threads["n"], nrows, max(1, n // _MIN_PER_THREAD))
    if nt <= 1:
        call(0, len(ras.wt), 0, n)
        return
    cuts = [nrows * t // nt for t in range(nt + 1)]
    parts = [(1 + r0 * (bl + 1), 1 + r1 * (bl + 1), r0 * bl, r1 * bl)
             for r0, r1 in zip(cuts[:-1], cuts[1:], strict=True)]
    for f in [_pool().submit(call, *p) for p in parts]:
        f.result()


def _bit_view(dt, n):
    """``f(out)``: the flat unsigned bit view of *out* (a tensor or array of *n* elements of
    dtype *dt*; ValueError/TypeError otherwise). A contiguous CPU tensor of the right dtype
    (the streaming workspace) takes its numpy view in ~4 us; anything else goes through
    out_bits' checks (~18 us)."""
    tdt = npu = None
    if torch is not None and dt.numpy_dtype is not None and dt.name != "bool":
        tdt, npu = dt.torch_dtype, dt.uint

    def view(out):
        if (tdt is not None and type(out) is torch.Tensor and out.dtype is tdt and out.is_cpu
                and out.is_contiguous()):
            ub = out.numpy().reshape(-1).view(npu)
        else:
            ub = out_bits(out, dt)
        if ub.size != n:
            raise ValueError(f"decode: out holds {ub.size} elements, expected {n}")
        return ub

    return view


def _some_rows(ras, dec, name):
    """``f(flat, rows, at=None)``: decode only the rows (blocks) *rows* (sorted, distinct, in
    range) of a fixed-row RAS into the same rows of *flat* (the whole tensor's bits), or
    into rows *at* (increasing, one per row) of *flat*, one tree decode per run of
    consecutive rows; the other rows of *flat* are left as they are. This is the paper's
    retrieval of single blocks (each row's tree range is known from the block length; a
    bulk decode of the range skips its delimiter)."""
    bl = ras.block_len

    def run(flat, rows, at=None):
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return
        at = rows if at is None else np.asarray(at, dtype=np.int64)
        cut = np.flatnonzero((np.diff(rows) != 1) | (np.diff(at) != 1)) + 1
        first, last = np.r_[0, cut], np.r_[cut - 1, rows.size - 1]
        try:
            for r0, r1, d0 in zip(rows[first].tolist(), (rows[last] + 1).tolist(),
                                  at[first].tolist(), strict=True):
                dec(flat[d0 * bl : (d0 + r1 - r0) * bl], 1 + r0 * (bl + 1),
                    1 + r1 * (bl + 1))
        except wavelet.WaveletError as e:
            raise CodecError(f"{name}: {e}") from None

    return run


def _rows_decoder(ras, dec, n):
    """``f(flat)``: decode a fixed-row RAS with the prepared tree decoder *dec*
    (:meth:`wavelet.WaveletTree.float_decoder` / ``lookup_decoder``) over
    :func:`_by_rows` (whole tensor in one call, or rows split over threads)."""

    def run(flat):
        if _threads["n"] <= 1:
            dec(flat)
            return
        _by_rows(ras, n, lambda start, stop, lo, hi: dec(flat[lo:hi], start, stop))

    return run


def _huffman_bits(counts: np.ndarray) -> int:
    """Total bits of a Huffman code for symbols with these counts (1 bit if one symbol)."""
    import heapq

    c = [int(x) for x in counts if x > 0]
    if len(c) <= 1:
        return sum(c)
    heapq.heapify(c)
    total = 0
    while len(c) > 1:
        a = heapq.heappop(c)
        b = heapq.heappop(c)
        total += a + b
        heapq.heappush(c, a + b)
    return total


# the sparse codec tries (distance, value) tuple symbols when the non-zeros take at most this
# many distinct values
_JOINT_MAX_VALUES = 16

# below this many elements the float codec builds every joint-bit choice and keeps the smallest
_EXACT_K_BELOW = 1 << 16

# stored bytes per distinct symbol of a tree (SYMC entry + the code table it adds, format
# 1.1), as measured on wavelet.WaveletTree (huffman shape); used only to rank encoding
# choices (k, escapes). The tree's bits are stored without their rank/select index (RAS
# parts, wavelet format 1.3), so the index kind does not change the stored size.
_TREE_BYTES_PER_SYMBOL = 3
# per distance symbol of the sparse codec: the tree's tables and its gap_table entry
_GAP_BYTES_PER_SYMBOL = _TREE_BYTES_PER_SYMBOL + 2


def _tree_bytes(counts, per_symbol: float) -> float:
    """Estimated stored bytes of a Huffman RAS tree over symbols with these counts: its
    bits, plus *per_symbol* bytes per distinct symbol."""
    return _huffman_bits(counts) / 8 + int(np.count_nonzero(counts)) * per_symbol


def _estimate_float_bytes(u, E, M, k) -> float:
    ut = u.dtype.type
    field = (u >> ut(M - k)) & ut((1 << (E + k)) - 1)
    counts = np.bincount(field.astype(np.int64), minlength=1)
    # per symbol: the tree's tables and the exp_table entry (uint8 when the field fits);
    # 3 more symbols for the RAS's flag/delimiter/end
    per_symbol = _TREE_BYTES_PER_SYMBOL + (1 if E + k <= 8 else 2)
    tree = _tree_bytes(counts, per_symbol) + 3 * per_symbol
    return tree + u.size * (M + 1 - k) / 8


def _operand_codes(ras) -> np.ndarray:
    """All operand codes of a RAS, for decoding a whole tensor.

    Whatever the form, the layer body is extracted in one call (bulk decode of the tree) and
    the control symbols dropped: by position for equal blocks, by value (codes >= k) for
    uneven ones, which needs no select. The form decides how *single* operands and blocks are
    fetched (:meth:`RAS.get` / :meth:`RAS.block`) and which fused kernels run; fetching a
    whole element-wise layer operand by operand would be ``n`` tree walks for the same
    result.
    """
    if ras.n == 0:
        return ras.decode()
    seq = ras.wt.extract(1, ras.n + ras.nblocks + 1)
    if ras.block_len:
        if seq.size != ras.nblocks * (ras.block_len + 1):
            raise CodecError("RAS: body length does not match")
        codes = np.ascontiguousarray(
            seq.reshape(ras.nblocks, ras.block_len + 1)[:, : ras.block_len]
        ).reshape(-1)
    else:
        codes = seq[seq < ras.k]
    if codes.size != ras.n:
        raise CodecError("RAS: operand count does not match")
    return codes


def _lengths(block_len, n):
    return block_len if np.ndim(block_len) == 0 else np.asarray(block_len)


# ---------------------------------------------------------------------------------------------
@register_codec
class DictCodec(Codec):
    """Dictionary codes in a Huffman wavelet tree (RAS ``codes``) + ``table`` of bit patterns.

    Applies when the tensor has at most ``max_values`` distinct bit patterns.

    Grouped codes (``meta["group"] = g``): with few, skewed values (a 4-bit quantized layer
    whose middle levels hold most weights) a Huffman code pays up to a bit per symbol over
    the entropy, and a symbol of a single value cannot cost less than one bit. Then each
    operand of the RAS is a run of ``g`` consecutive values of a row (``g`` in 2, 4, 8, with
    ``g`` times the element size at most 8 bytes, dividing the row length), coded as one
    symbol; ``table`` holds the distinct runs as words of ``g`` elements (little-endian, so
    a decoded word is the run in memory order). ``g`` is picked by estimated size, up to
    ``max_group``.
    """

    codec_id = "dict"
    groups_kernels = True

    def __init__(self, form: str = BLOCK, max_values: int = _DICT_MAX_VALUES,
                 index: str = "compact",
                 max_group: int = 8):
        super().__init__(form, index)
        self.max_values = int(max_values)
        self.max_group = int(max_group)
        if self.max_group not in (1, 2, 4, 8):
            raise ValueError("dict: max_group must be 1, 2, 4 or 8")

    def get_config(self):
        return {**super().get_config(), "max_values": self.max_values,
                "max_group": self.max_group}

    def _encode_bits(self, u, dt, block_len):
        # cheap rejection of dense float tensors: a strided sample larger than max_values
        # already holds more distinct values than allowed (a sample of max_values elements
        # or fewer never could, so it must be larger)
        m = 4 * self.max_values
        if u.size > 2 * m:
            sample = u[:: u.size // m]
            if np.unique(sample).size > self.max_values:
                raise NotApplicable("dict: too many distinct values")
        table, codes = _freq_table(u)
        if table.size > self.max_values:
            raise NotApplicable(f"dict: {table.size} distinct values > {self.max_values}")
        L = int(block_len) if np.ndim(block_len) == 0 else 0
        g, keys = self._choose_group(codes, table.size, u.dtype.itemsize, L)
        meta = {"form": self.form}
        arrays = {}
        if g > 1:
            ttable, tcodes = _freq_table(keys)
            K = np.uint64(table.size)
            digits = np.stack([(ttable // K ** np.uint64(j)) % K for j in range(g)], axis=1)
            if g * u.dtype.itemsize <= 8:  # runs of values
                words = np.ascontiguousarray(table.astype(u.dtype)[digits.astype(np.int64)])
                wide = np.dtype(f"<u{g * u.dtype.itemsize}")
            else:  # runs of 1-byte codes, then the values (two lookups)
                words = np.ascontiguousarray(digits.astype(np.uint8))
                wide = np.dtype(f"<u{g}")
                arrays["values"] = table.astype(u.dtype)
                meta["run_codes"] = 1
            tab = words.view(wide).reshape(-1)
            ras = RAS.build(tcodes, tab.size, self.form, L // g, index=self.index)
            meta["group"] = g
        else:
            tab = table.astype(u.dtype)
            ras = RAS.build(codes, table.size, self.form, _lengths(block_len, u.size),
                            index=self.index)
        arrays["table"] = tab
        return Encoded(self.codec_id, meta, arrays, {"codes": ras})

    def _choose_group(self, codes, K, itemsize, L):
        """``(g, keys)``: the run length with the smallest estimated size and the runs'
        combined codes (None for g = 1)."""
        best_g, best_keys = 1, None
        if L <= 0 or K <= 1 and codes.size == 0:
            return best_g, best_keys
        per_sym = _TREE_BYTES_PER_SYMBOL
        best = _tree_bytes(np.bincount(codes), itemsize + per_sym)
        g = 2
        while (g <= self.max_group and L % g == 0 and K ** g < 1 << 62
               and (g * itemsize <= 8 or K <= 256)):
            c = codes.astype(np.uint64).reshape(-1, g)
            keys = c[:, 0].copy()
            for j in range(1, g):
                keys += c[:, j] * np.uint64(K) ** np.uint64(j)
            _, cnt = np.unique(keys, return_counts=True)
            if cnt.size > self.max_values * 16:
                break
            # a run is g values, or (when g values do not fit a word) g 1-byte codes plus
            # the value table
            run = g * itemsize if g * itemsize <= 8 else g
            size = (_tree_bytes(cnt, run + per_sym)
                    + (K * itemsize if run == g else 0))
            if size < best * 0.99:
                best, best_g, best_keys = size, g, keys
            g *= 2
        return best_g, best_keys

    def _decode_bits(self, enc, out):
        self._plan_bits(enc, out.size)(out)

    def _group(self, enc):
        try:
            g = int(enc.meta.get("group", 1))
        except (TypeError, ValueError):
            raise CodecError("dict: bad group") from None
        if g not in (1, 2, 4, 8):
            raise CodecError(f"dict: bad group {g}")
        return g

    def _block_len(self, enc):
        return super()._block_len(enc) * self._group(enc)

    def _plan_bits(self, enc, n):
        ras, table = enc.ras["codes"], enc.arrays["table"]
        g = self._group(enc)
        dt = dtype_info(enc.meta["dtype"])
        if n % g or len(ras) != n // g or table.size != ras.k:
            raise CodecError("dict: parts do not match the tensor")
        if enc.meta.get("run_codes"):
            return self._plan_run_codes(enc, n, g, dt)
        if table.dtype.kind != "u" or table.dtype.itemsize != g * dt.itemsize:
            if g > 1 or table.dtype.itemsize != dt.itemsize:
                raise CodecError("dict: bad table")
        if g > 1 and not ras.block_len:
            raise CodecError("dict: grouped codes need equal rows")
        m = n // g
        if n == 0:
            return lambda out: None
        rows = None
        if ras.block_len and ras.code_dtype.itemsize <= 2 and table.dtype.kind == "u":
            try:  # in C, delimiters skipped, no code buffer
                dec = ras.wt.lookup_decoder(np.ascontiguousarray(table), lead=1,
                                            block=ras.block_len, nelems=m)
            except wavelet.WaveletError as e:
                raise CodecError(f"dict: {e}") from None
            rows = _rows_decoder(ras, dec, m)

        def run(out):
            if out.dtype.itemsize * g != table.dtype.itemsize:
                raise CodecError("dict: parts do not match the tensor")
            flat = out.reshape(-1) if out.flags.c_contiguous and out.flags.writeable else None
            if flat is not None and g > 1:
                flat = flat.view(table.dtype)
            if rows is not None and flat is not None:
                try:
                    rows(flat)
                except wavelet.WaveletError as e:
                    raise CodecError(f"dict: {e}") from None
                return
            codes = _operand_codes(ras)
            if ras.k and int(codes.max()) >= ras.k:
                raise CodecError("dict: code out of range")
            if g == 1:
                np.take(table, codes, out=out)
            else:
                out[...] = np.take(table, codes).view(out.dtype).reshape(out.shape)

        if rows is not None:
            some = _some_rows(ras, dec, "dict")
            run.some_rows = some if g == 1 else (
                lambda fl, r, at=None: some(fl.view(table.dtype), r, at))
        return run

    def _plan_run_codes(self, enc, n, g, dt):
        """Runs of ``g`` 1-byte codes (``meta["run_codes"]``): the tree decode writes the
        codes (a word of ``g`` bytes per run), then a second C lookup maps them to values."""
        ras, table, values = enc.ras["codes"], enc.arrays["table"], enc.arrays.get("values")
        if (enc.meta["run_codes"] != 1 or g == 1 or values is None or values.ndim != 1
                or values.dtype.kind != "u" or values.dtype.itemsize != dt.itemsize
                or not 0 < values.size <= 256 or table.dtype != np.dtype(f"<u{g}")
                or not ras.block_len or ras.code_dtype.itemsize > 2):
            raise CodecError("dict: bad run-code parts")
        values = np.ascontiguousarray(values)
        try:
            dec = ras.wt.lookup_decoder(np.ascontiguousarray(table), lead=1,
                                        block=ras.block_len, nelems=n // g)
        except wavelet.WaveletError as e:
            raise CodecError(f"dict: {e}") from None

        def codes_of(fl):
            cb = np.empty(fl.size, dtype=np.uint8)
            dec(cb.view(table.dtype))
            return cb

        def run(out):
            if out.dtype.itemsize != dt.itemsize:
                raise CodecError("dict: parts do not match the tensor")
            flat = out.reshape(-1) if out.flags.c_contiguous and out.flags.writeable else None
            dst = flat if flat is not None else np.empty(n, dtype=values.dtype)
            try:
                wavelet.lookup(codes_of(dst), values, dst.view(values.dtype))
            except wavelet.WaveletError as e:
                raise CodecError(f"dict: {e}") from None
            if flat is None:
                out[...] = dst.reshape(out.shape).view(out.dtype)

        some = _some_rows(ras, dec, "dict")
        bl = ras.block_len * g  # elements per RAS block

        def some_rows(fl, rows, at=None):  # as _some_rows
            rows = np.asarray(rows, dtype=np.int64)
            at = rows if at is None else np.asarray(at, dtype=np.int64)
            cb = np.empty(fl.size, dtype=np.uint8)  # only the decoded rows are read
            some(cb.view(table.dtype), rows, at)
            sel = (at[:, None] * bl + np.arange(bl)).reshape(-1)
            try:
                part = np.empty(sel.size, dtype=values.dtype)
                wavelet.lookup(np.ascontiguousarray(cb[sel]), values, part)
            except wavelet.WaveletError as e:
                raise CodecError(f"dict: {e}") from None
            fl[sel] = part

        run.some_rows = some_rows
        return run

    def _to_text(self, enc, max_symbols):
        g = self._group(enc)
        if g == 1:
            return super()._to_text(enc, max_symbols)
        dt = dtype_info(enc.meta["dtype"])
        m = enc.meta  # a child part (values of a sparse or narrow tensor) has n, no shape
        n = int(np.prod(m["shape"], dtype=np.int64)) if "shape" in m else int(m["n"])
        ub = np.empty(n, dtype=dt.uint)
        self._decode_bits(enc, ub)
        vals = _values_list(ub, dt)
        r = enc.ras["codes"]
        return r.to_text(lambda i, c: "(" + ",".join(_fmt(v) for v in vals[i * g:(i + 1) * g])
                         + ")", max_symbols=max_symbols)


# ---------------------------------------------------------------------------------------------
@register_codec
class SparseCodec(Codec):
    """The tuple extension for pruned tensors: (distance to previous non-zero, value).

    Parts: ``gaps`` (RAS of distance codes; one block per kernel, distances restart after each
    delimiter), ``gap_table`` (code -> distance symbol), child ``values`` (the non-zeros,
    encoded with the best of float/dict/raw in a RAS over the same blocks). Applies when at
    least ``min_zero_fraction`` of the elements are exactly zero (all bits clear).

    Long distances are escaped (``meta["esc"] = T``): a distance ``g < T`` is its own symbol;
    a longer one is the symbol ``T + b`` (``b = floor(log2(g - T + 1))``) plus ``b`` raw bits
    (part ``gap_extra``, bit-packed LSB first, in element order). At high sparsity the
    distances spread over hundreds of values and a symbol per distance would cost more in
    the tree's per-symbol tables than it saves; ``T`` is picked per tensor by estimated size
    (no ``esc``: every distance is a symbol). Or the distances are Rice-coded
    (``meta["rice"] = r``): the symbol is ``g >> r`` and ``gap_extra`` holds the ``r`` low
    bits of every distance. Random pruning leaves geometric distances, for which this is
    within a few hundredths of a bit of their entropy, with an alphabet of a few dozen
    quotients. Whichever of the three is smallest by estimate is kept.

    A block is ``meta["block_len"]`` elements: one kernel (row) by default, or up to
    ``max_rows_per_block`` consecutive rows (a power of two dividing the row count) when
    that is smaller by estimate: at high sparsity a row holds a few non-zeros and its
    delimiter costs about as much as they do. The fused kernels read one row per block
    (their codec config sets ``max_rows_per_block=1``).
    """

    codec_id = "sparse"

    def __init__(self, form: str = BLOCK, min_zero_fraction: float = 0.2,
                 index: str = "compact", joint: bool = True, max_rows_per_block: int = 64,
                 value_joint_bits: int | None = None, extra_bits_min_gain: float = 0.0):
        super().__init__(form, index)
        # escaped or Rice-coded distances only when they are at least this much smaller
        # than every distance a symbol (with 1-byte codes): the fused kernels' per-call walk
        # reads the extra bits of every distance (1.25x its time at 90-95% sparsity), where
        # the decoder's cost is the tree (escapes keep its alphabet small and decode
        # faster); the fused codec config sets it (wrapping._fusable)
        self.extra_bits_min_gain = float(extra_bits_min_gain)
        self.min_zero_fraction = float(min_zero_fraction)
        self.joint = bool(joint)  # False: never tuple symbols (the fused kernels' form)
        self.max_rows_per_block = int(max_rows_per_block)
        if self.max_rows_per_block < 1:
            raise ValueError("sparse: max_rows_per_block must be at least 1")
        # max_joint_bits of a float values child (None: FloatCodec's default); 0 gives the
        # fused kernels' fast value path (whole byte planes, no bit-packed remainder)
        self.value_joint_bits = None if value_joint_bits is None else int(value_joint_bits)
        if self.value_joint_bits is not None and not 0 <= self.value_joint_bits <= 8:
            raise ValueError("sparse: value_joint_bits must be in 0..8")

    def get_config(self):
        return {**super().get_config(), "min_zero_fraction": self.min_zero_fraction,
                "joint": self.joint, "max_rows_per_block": self.max_rows_per_block,
                "value_joint_bits": self.value_joint_bits,
                "extra_bits_min_gain": self.extra_bits_min_gain}

    @staticmethod
    def _block_gaps(nz, L):
        """``(distances, block of each non-zero)`` for blocks of *L* elements: the distance
        to the previous non-zero of the same block, or from the block's start."""
        b = nz // L
        o = nz - b * L
        prev = np.empty_like(o)
        prev[1:] = o[:-1]
        if prev.size:
            prev[0] = -1
        first = np.ones(nz.size, dtype=bool)
        first[1:] = b[1:] != b[:-1]
        prev[first] = -1
        return o - prev - 1, b

    def _rows_per_block(self, nz, n: int, L: int) -> int:
        """The rows per block (a power of two up to ``max_rows_per_block`` dividing the row
        count) with the smallest estimated distance stream: its tree bits, delimiters
        included, and the escapes' raw bits."""
        rows = n // L
        best_m, best = 1, None
        m = 1
        while m <= min(self.max_rows_per_block, rows) and rows % m == 0:
            gaps, _ = self._block_gaps(nz, L * m)
            sym, extra = _code_gaps(gaps, _choose_gap_coding(gaps))
            cnt = np.bincount(sym.astype(np.int64)) if sym.size else np.zeros(0, np.int64)
            size = _tree_bytes(np.append(cnt, rows // m), _GAP_BYTES_PER_SYMBOL) + extra.size
            if best is None or size < best:
                best_m, best = m, size
            m *= 2
        return best_m

    def _encode_bits(self, u, dt, block_len):
        """The smaller of: the +0.0 elements as zeros (``-0.0`` a value like any other); and,
        for a float tensor holding ``-0.0`` (``torch.nn.utils.prune`` multiplies by its
        mask, so every pruned negative weight is one), zeros of either sign plus one raw
        sign bit per zero (``meta["zsign"] = 1``, part ``zero_sign``)."""
        nz = np.flatnonzero(u)
        nneg = 0
        if dt.is_float and nz.size:
            sign = dt.uint.type(1 << (8 * dt.itemsize - 1))
            nneg = int(np.count_nonzero(u == sign))
        forms = [False]
        nzero = u.size - nz.size + nneg
        if nneg and nzero >= self.min_zero_fraction * u.size:
            if nneg * 8 >= nzero and _many_values(u[nz]):
                # too many distinct values for a dictionary: a -0.0 stored as a value goes
                # to the float codec and costs at least 8 bits (a distance code, an exponent
                # code, its raw sign and mantissa bits), a sign 1 bit per zero: at this
                # share of -0.0 the plain form cannot be smaller, and is not built
                forms = [True]
            else:
                forms = [False, True]
        found, err = [], None
        for signed in forms:
            if signed:
                is_zero = (u & ~sign) == 0
                signs = np.packbits(u[is_zero] != 0, bitorder="little")
                nz_s = np.flatnonzero(~is_zero)
            try:
                enc = self._encode_nz(u, dt, block_len, nz_s if signed else nz)
            except NotApplicable as e:
                err = e
                continue
            if signed:
                enc = Encoded(enc.codec_id, {**enc.meta, "zsign": 1},
                              {**enc.arrays, "zero_sign": signs}, enc.ras, enc.children)
            found.append(enc)
        if not found:
            raise err
        return min(found, key=lambda e: e.nbytes)

    def _encode_nz(self, u, dt, block_len, nz):
        """The encoding of the elements *nz* (sorted positions) as the non-zeros."""
        n = u.size
        L = int(block_len) if np.ndim(block_len) == 0 else 0
        if not L and n:
            raise NotApplicable("sparse: needs equal-length blocks")
        if n == 0 or (n - nz.size) < self.min_zero_fraction * n:
            raise NotApplicable("sparse: not sparse enough")
        if self.max_rows_per_block > 1 and nz.size:
            L *= self._rows_per_block(nz, n, L)
        nb = n // L
        gaps, b = self._block_gaps(nz, L)
        counts = np.bincount(b, minlength=nb).astype(np.int64)
        vals = np.ascontiguousarray(u[nz])
        child = _best_bits(vals, dt, counts, self.form, (FloatCodec, DictCodec, RawCodec),
                           self.index, {"max_joint_bits": self.value_joint_bits})
        best = best_cost = None
        # the distance codings worth building (estimates cannot see how the joint tuples'
        # alphabet grows with the distance alphabet): the smallest is kept; plain distances
        # whose codes fit a byte count extra_bits_min_gain smaller (a larger alphabet makes
        # a deeper tree and 2-byte codes, which cost the kernels more than the extra bits)
        for coding in _gap_codings(gaps, plain_too=self.extra_bits_min_gain > 0):
            sym, extra = _code_gaps(gaps, coding)
            arrays = {"gap_extra": extra} if coding else {}
            table, codes = _freq_table(sym.astype(np.uint64))
            byte_codes = table.size + 4 <= 256  # + the RAS's control symbols
            penalty = 1.0 - (self.extra_bits_min_gain if not coding and byte_codes else 0.0)
            arrays["gap_table"] = table.astype(smallest_uint(int(table.max()) if table.size
                                                             else 0))
            ras = RAS.build(codes, table.size, self.form, counts, index=self.index)
            meta = {"form": self.form, "block_len": L, "nnz": int(nz.size), **coding}
            for enc in (Encoded(self.codec_id, meta, arrays, {"gaps": ras}, {"values": child}),
                        self._joint(table, codes, vals, counts, meta, arrays)
                        if self.joint else None):
                if enc is not None and (best is None or enc.nbytes * penalty < best_cost):
                    best, best_cost = enc, enc.nbytes * penalty
        return best

    def _joint(self, gtable, gcodes, vals, counts, meta, arrays):
        """The tuple ``(distance, value)`` as one symbol (``meta["joint"] = 1``), when the
        non-zeros take at most ``_JOINT_MAX_VALUES`` values (a quantized pruned layer): a
        separate value stream of 2-4 symbols pays most of a bit per value over its entropy
        (Huffman cannot go below one bit per symbol); inside the distance symbol the value
        costs close to its entropy. Parts: ``gap_table`` and ``val_table`` map a tuple code
        to its distance symbol and its value's bits; or, when smaller, ``val_table`` holds
        the distinct values and ``val_index`` each tuple code's index into it. There is no
        ``values`` child."""
        vtable, vcodes = _freq_table(vals)
        if vtable.size > _JOINT_MAX_VALUES or vals.size == 0:
            return None
        V = int(vtable.size)
        key = gcodes.astype(np.int64) * V + vcodes
        jtable, jcodes = _freq_table(key)
        ja = dict(arrays)
        g = gtable[jtable // V]
        ja["gap_table"] = g.astype(smallest_uint(int(g.max()) if g.size else 0))
        vi = (jtable % V).astype(smallest_uint(V - 1))
        if vtable.nbytes + vi.nbytes < vi.size * vtable.itemsize:
            # the V values once and a small index per tuple code (part val_index), not
            # every tuple code's value in full width
            ja["val_table"] = np.ascontiguousarray(vtable)
            ja["val_index"] = vi
        else:
            ja["val_table"] = np.ascontiguousarray(vtable[vi])
        ras = RAS.build(jcodes, jtable.size, self.form, counts, index=self.index)
        return Encoded(self.codec_id, {**meta, "joint": 1}, ja, {"gaps": ras})

    def _gap_values(self, enc, codes) -> np.ndarray:
        """The distances (int64) of the operands, from their codes (escapes resolved)."""
        table = enc.arrays["gap_table"]
        sym = table[codes].astype(np.int64)
        rice = _rice_of(enc)
        if rice:
            extra = _gap_extra(enc)
            if extra.size != (sym.size * rice + 7) // 8:
                raise CodecError("sparse: gap_extra has the wrong size")
            bits = np.unpackbits(extra, bitorder="little")[: sym.size * rice]
            low = (bits.reshape(-1, rice).astype(np.int64) << np.arange(rice)).sum(1)
            return (sym << rice) | low
        esc = enc.meta.get("esc")
        if esc is None:
            return sym
        try:
            T = int(esc)
        except (TypeError, ValueError):
            raise CodecError("sparse: bad escape threshold") from None
        if T < 0 or (sym.size and int(sym.max()) >= T + 63):
            raise CodecError("sparse: bad escape symbols")
        extra = _gap_extra(enc)
        is_esc = sym >= T
        nbits = sym[is_esc] - T
        total = int(nbits.sum())
        if extra.size != (total + 7) // 8:
            raise CodecError("sparse: gap_extra has the wrong size")
        val = (np.int64(1) << nbits) - 1 + T
        has = np.flatnonzero(nbits)
        if has.size:
            bits = np.unpackbits(extra, bitorder="little")[:total].astype(np.int64)
            off = np.cumsum(nbits) - nbits
            shift = np.arange(total, dtype=np.int64) - np.repeat(off, nbits)
            val[has] += np.add.reduceat(bits << shift, off[has])
        sym[is_esc] = val
        return sym

    def _positions(self, enc, n, counts: bool = True, scatter=None, seq=None):
        """``(positions, per-block counts)`` of the non-zeros: one extract of the gap RAS
        (or *seq*, that extract already made) and one pass in C
        (:func:`wavelet.gap_positions`) that follows the delimiters (counts is None unless
        asked for). With ``scatter=(vals, flat_out)`` the values are written to their
        positions instead (:func:`wavelet.gap_scatter`)."""
        ras, table = enc.ras["gaps"], enc.arrays["gap_table"]
        L, nnz = int(enc.meta["block_len"]), int(enc.meta["nnz"])
        if len(ras) != nnz or table.dtype.kind != "u" or table.size != ras.k:
            raise CodecError("sparse: gap parts do not match")
        if L <= 0 or n % L or ras.nblocks != n // L:
            raise CodecError("sparse: block layout does not match the tensor")
        nb = ras.nblocks
        esc = enc.meta.get("esc")
        rice = _rice_of(enc)
        extra = None
        if rice:
            if esc is not None:
                raise CodecError("sparse: Rice-coded distances with an escape threshold")
            extra = _gap_extra(enc)
        elif esc is not None:
            try:
                esc = int(esc)
            except (TypeError, ValueError):
                raise CodecError("sparse: bad escape threshold") from None
            extra = _gap_extra(enc)
            if esc < 0:
                raise CodecError("sparse: bad escape threshold")
        if seq is None:
            seq = self._gap_body(ras)
        if seq.size != nnz + nb:
            raise CodecError("sparse: gap stream length does not match")
        if seq.dtype.itemsize > 4:
            raise CodecError("sparse: gap alphabet too large")
        extra = None if extra is None else np.ascontiguousarray(extra)
        if scatter is not None:  # positions never materialised: out zeroed and filled in C
            vals, out = scatter
            try:
                wavelet.gap_scatter(seq, table, ras.DELIM, L, nb, vals, out, esc=esc,
                                    extra=extra, rice=rice or None)
            except (wavelet.WaveletError, ValueError) as e:
                raise CodecError(f"sparse: corrupt gap stream ({e})") from None
            return None, None
        try:
            pos = wavelet.gap_positions(seq, table, ras.DELIM, L, nb, nnz, esc=esc, extra=extra,
                                        rice=rice or None)
        except (wavelet.WaveletError, ValueError) as e:
            raise CodecError(f"sparse: corrupt gap stream ({e})") from None
        if not counts:
            return pos, None
        cnt = np.bincount(pos // L, minlength=nb).astype(np.int64) if nb else pos[:0]
        return pos, cnt

    @staticmethod
    def _gap_body(ras) -> np.ndarray:
        """The gap RAS without its flag and end marker: codes and delimiters in order."""
        return ras.wt.extract(1, len(ras.wt) - 1)

    def _joint_values(self, enc, nnz, dtype, seq):
        """The non-zeros in element order from the tuple codes (``meta["joint"]``) of the
        gap stream *seq* (:meth:`_gap_body`)."""
        ras, vt = enc.ras["gaps"], enc.arrays.get("val_table")
        if vt is None or vt.dtype != dtype or vt.ndim != 1:
            raise CodecError("sparse: bad val_table part")
        vi = enc.arrays.get("val_index")
        if vi is not None:  # the distinct values, and each tuple code's value index
            if (vi.dtype.kind != "u" or vi.ndim != 1 or vi.size != ras.k
                    or (vi.size and int(vi.max()) >= vt.size)):
                raise CodecError("sparse: bad val_index part")
            vt = vt[vi]
        if vt.size != ras.k:
            raise CodecError("sparse: bad val_table part")
        codes = seq[seq < ras.k]
        if codes.size != nnz:
            raise CodecError("sparse: tuple count does not match")
        return vt[codes]

    def _decode_bits(self, enc, out):
        try:
            nnz = int(enc.meta["nnz"])
        except (KeyError, TypeError, ValueError):
            raise CodecError("sparse: bad nnz") from None
        seq = None
        if enc.meta.get("joint"):
            if enc.meta["joint"] != 1 or enc.children:
                raise CodecError("sparse: bad joint tuple parts")
            seq = self._gap_body(enc.ras["gaps"])  # one extract for the values and positions
            vals = self._joint_values(enc, nnz, out.dtype, seq)
        else:
            child = enc.children.get("values")
            if child is None:
                raise CodecError("sparse: missing values part")
            if child.meta.get("dtype") != enc.meta["dtype"] or child.meta.get("n") != nnz:
                raise CodecError("sparse: values part does not match")
            vals = np.empty(nnz, dtype=out.dtype)
            registry[child.codec_id]()._decode_bits(child, vals)
        flat = out.reshape(-1) if out.flags.c_contiguous and out.flags.writeable else None
        if flat is not None and out.dtype.kind == "u":
            self._positions(enc, out.size, counts=False, scatter=(vals, flat), seq=seq)
        else:
            pos, _ = self._positions(enc, out.size, counts=False, seq=seq)
            out[...] = 0
            out[pos] = vals
        if enc.meta.get("zsign") is not None:
            if flat is None:  # a strided or read-only view: signs applied to a copy
                tmp = np.ascontiguousarray(out).reshape(-1)
                self._apply_zero_signs(enc, tmp, nnz)
                out[...] = tmp.reshape(out.shape)
            else:
                self._apply_zero_signs(enc, flat, nnz)

    @staticmethod
    def _apply_zero_signs(enc, flat, nnz) -> None:
        """``meta["zsign"]``: give the zeros (all +0.0 after the scatter) the signs of part
        ``zero_sign`` (one bit per zero, in element order, LSB first)."""
        if enc.meta["zsign"] != 1:
            raise CodecError("sparse: bad zsign")
        dt = dtype_info(enc.meta["dtype"])
        zs = enc.arrays.get("zero_sign")
        nzero = flat.size - nnz
        if (not dt.is_float or zs is None or zs.dtype != np.uint8 or zs.ndim != 1
                or zs.size != (nzero + 7) // 8 or (nzero % 8 and zs[-1] >> (nzero % 8))):
            raise CodecError("sparse: bad zero_sign part")
        if flat.dtype.kind != "u" or not (flat.flags.c_contiguous and flat.flags.writeable):
            raise CodecError("sparse: zero signs need a writable contiguous bit view")
        try:  # one C pass; more or fewer zeros than signs (a stored value 0) is corrupt
            wavelet.zero_signs(flat, np.ascontiguousarray(zs), nzero)
        except wavelet.WaveletError:
            raise CodecError("sparse: values and zero signs do not match") from None

    def _to_text(self, enc, max_symbols):
        dt = dtype_info(enc.meta["dtype"])
        n = int(np.prod(enc.meta["shape"], dtype=np.int64))
        ub = np.empty(n, dtype=dt.uint)
        self._decode_bits(enc, ub)
        pos, _ = self._positions(enc, n, counts=False)
        vals = _values_list(ub[pos], dt)
        gaps = self._gap_values(enc, enc.ras["gaps"].decode())
        return enc.ras["gaps"].to_text(
            lambda i, c: f"({int(gaps[i])},{_fmt(vals[i])})", max_symbols=max_symbols
        )


def _many_values(vals: np.ndarray) -> bool:
    """Whether *vals* takes more distinct values than a dictionary holds (DictCodec's
    default ``max_values``), so that neither the dict codec nor joint tuples apply."""
    return vals.size > _DICT_MAX_VALUES and np.unique(vals).size > _DICT_MAX_VALUES


def _escape_gaps(gaps: np.ndarray, T: int):
    """``(symbols, packed extra bits)`` for escape threshold *T* (see :class:`SparseCodec`)."""
    g = gaps.astype(np.int64)
    sym = g.copy()
    is_esc = g >= T
    v = g[is_esc] - T + 1  # >= 1
    nbits = np.floor(np.log2(v)).astype(np.int64)
    # log2 in floating point can be off by one near powers of two: fix exactly
    nbits -= (np.int64(1) << nbits) > v
    nbits += (np.int64(1) << (nbits + 1)) <= v
    sym[is_esc] = T + nbits
    extra = v - (np.int64(1) << nbits)
    total = int(nbits.sum())
    if total:
        off = np.cumsum(nbits) - nbits
        shift = np.arange(total, dtype=np.int64) - np.repeat(off, nbits)
        bits = (np.repeat(extra, nbits) >> shift) & 1
        packed = np.packbits(bits.astype(np.uint8), bitorder="little")
    else:
        packed = np.zeros(0, np.uint8)
    return sym, packed


def _gap_extra(enc) -> np.ndarray:
    """A sparse encoding's ``gap_extra`` part (the escapes' or Rice coding's raw bits),
    checked to be a 1-D uint8 array."""
    extra = enc.arrays.get("gap_extra")
    if extra is None or extra.dtype != np.uint8 or extra.ndim != 1:
        raise CodecError("sparse: missing or bad gap_extra part")
    return extra


def _rice_of(enc) -> int:
    """The Rice width of a sparse encoding's distances (``meta["rice"]``), 0 if none."""
    r = enc.meta.get("rice")
    if r is None:
        return 0
    if not isinstance(r, int) or isinstance(r, bool) or not 1 <= r <= 32:
        raise CodecError("sparse: bad Rice width")
    return r


def _rice_gaps(gaps: np.ndarray, r: int):
    """``(quotient symbols, packed low bits)``: Rice coding with *r* low bits per distance,
    bit-packed LSB first in element order (part ``gap_extra``)."""
    g = gaps.astype(np.int64)
    low = (g[:, None] >> np.arange(r, dtype=np.int64)) & 1
    return g >> r, np.packbits(low.astype(np.uint8).reshape(-1), bitorder="little")


def _code_gaps(gaps: np.ndarray, coding: dict):
    """``(symbols, packed extra bits)`` for a coding from :func:`_choose_gap_coding`."""
    if "esc" in coding:
        return _escape_gaps(gaps, coding["esc"])
    if "rice" in coding:
        return _rice_gaps(gaps, coding["rice"])
    return gaps, np.zeros(0, np.uint8)


def _gap_codings_est(gaps: np.ndarray):
    """``((plain-or-escape coding, its estimated bytes), (best Rice coding, bytes) or
    None)``, see :func:`_choose_gap_coding`."""
    g = gaps.astype(np.int64)
    T = _choose_escape(gaps)
    esc = {} if T is None else {"esc": T}
    sym, extra = _code_gaps(gaps, esc)
    first = (esc, _tree_bytes(np.bincount(sym.astype(np.int64)), _GAP_BYTES_PER_SYMBOL)
             + extra.size)
    rice = None
    for r in range(1, min(16, int(g.max()).bit_length()) + 1):
        size = _tree_bytes(np.bincount(g >> r), _GAP_BYTES_PER_SYMBOL) + (g.size * r + 7) // 8
        if rice is None or size < rice[1]:
            rice = ({"rice": r}, size)
    return first, rice


def _choose_gap_coding(gaps: np.ndarray) -> dict:
    """The distance coding with the smallest estimated size: ``{}`` (every distance a
    symbol), ``{"esc": T}`` (long distances escaped, :func:`_choose_escape`) or
    ``{"rice": r}`` (symbol ``g >> r`` + ``r`` raw bits: near the entropy of the
    geometric distances of random pruning, with a small alphabet, so small tables, also
    inside joint (distance, value) symbols)."""
    if gaps.size == 0:
        return {}
    first, rice = _gap_codings_est(gaps)
    return rice[0] if rice is not None and rice[1] < first[1] else first[0]


def _gap_codings(gaps: np.ndarray, plain_too: bool = False) -> list:
    """The distance codings the encoder builds and measures: the best plain-or-escape one
    and the best Rice one (by estimate), the latter only if its estimate is within 5% of
    the former's (a joint tuple alphabet can still make it the smaller); with *plain_too*,
    plain distances as well when escapes were chosen but plain is within 1% (for an
    encoder that prefers codings without extra bits, ``extra_bits_min_gain``)."""
    if gaps.size == 0:
        return [{}]
    first, rice = _gap_codings_est(gaps)
    out = [first[0]]
    if rice is not None and rice[1] < 1.05 * first[1]:
        out.append(rice[0])
    if plain_too and first[0]:  # escapes chosen: plain too if its estimate is within 1%
        best = min(first[1], rice[1] if rice is not None else first[1])
        if _tree_bytes(np.bincount(gaps.astype(np.int64)), _GAP_BYTES_PER_SYMBOL) < 1.01 * best:
            out.insert(0, {})
    return out


def _choose_escape(gaps: np.ndarray):
    """The escape threshold with the smallest estimated size, or None (no escapes)."""
    if gaps.size == 0:
        return None
    per_symbol = _GAP_BYTES_PER_SYMBOL

    def est(sym, extra_bits):  # + the RAS's 3 control symbols
        return _tree_bytes(np.bincount(sym), per_symbol) + 3 * per_symbol + extra_bits / 8

    g = gaps.astype(np.int64)
    best_T, best = None, est(g, 0)
    mx = int(g.max())
    for T in (4, 8, 16, 32, 64, 128, 256):
        if T > mx:
            break
        v = g[g >= T] - T + 1
        nbits = np.floor(np.log2(v)).astype(np.int64)
        sym = np.where(g >= T, T + np.floor(np.log2(np.maximum(g - T + 1, 1))), g)
        size = est(sym.astype(np.int64), int(nbits.sum()))
        if size < best:
            best_T, best = T, size
    return best_T


# ---------------------------------------------------------------------------------------------
@register_codec
class RawCodec(Codec):
    """Fallback: the bits as they are (part ``data``)."""

    codec_id = "raw"

    def _encode_bits(self, u, dt, block_len):
        return Encoded(self.codec_id, {}, {"data": np.array(u, copy=True)})

    def _decode_bits(self, enc, out):
        d = enc.arrays["data"]
        if d.dtype != out.dtype or d.size != out.size:
            raise CodecError("raw: part does not match the tensor")
        out[...] = d.reshape(-1)


# ---------------------------------------------------------------------------------------------
# narrower float formats a wider one can hold exactly, narrowest first
_NARROWER = {"float64": ("float16", "bfloat16", "float32"), "float32": ("float16", "bfloat16")}


def _low_bits_zero(u: np.ndarray, wide: str, nd: str) -> np.ndarray:
    """Per element of the *wide* float bits *u*: the low mantissa bits that *nd* lacks are
    zero (a cheap first test of exactness in *nd*)."""
    drop = dtype_info(wide).mant_bits - dtype_info(nd).mant_bits
    return (u & u.dtype.type((1 << drop) - 1)) == 0


def _narrow_cast(u: np.ndarray, wide: str, nd: str) -> tuple[np.ndarray, np.ndarray]:
    """``(bits, exact)``: the *wide* float bits *u* converted to format *nd* (its uint view),
    and per element whether that conversion is exact and back, bit for bit. A NaN is never
    exact: conversions do not promise to keep its payload."""
    W, N = dtype_info(wide), dtype_info(nd)
    f = u.view(W.numpy_dtype)
    exact = ~np.isnan(f)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # checked here
        if nd == "bfloat16":  # via float32, then its high half
            f32 = f if wide == "float32" else f.astype(np.float32)
            if wide != "float32":
                exact &= f32.astype(f.dtype).view(u.dtype) == u
            b = f32.view(np.uint32)
            exact &= (b & np.uint32(0xFFFF)) == 0  # a float32 subnormal can need more bits
            return (b >> np.uint32(16)).astype(np.uint16), exact
        g = f.astype(N.numpy_dtype)
        exact &= g.astype(f.dtype).view(u.dtype) == u
    return g.view(N.uint), exact


def _narrowed(u: np.ndarray, wide: str, nd: str) -> np.ndarray | None:
    """The bits of the *wide* float tensor *u* (its uint view) in format *nd*, or None
    unless every element converts exactly and back (:func:`_narrow_cast`). Cheap rejection
    first: the low mantissa bits that *nd* lacks must be zero everywhere."""
    if not _low_bits_zero(u, wide, nd).all():
        return None
    bits, exact = _narrow_cast(u, wide, nd)
    return bits if exact.all() else None


def _widen_into(nb: np.ndarray, nd: str, out: np.ndarray, wide: str) -> None:
    """``out`` (uint view of a *wide* float array) = the *nd* bits *nb* converted exactly."""
    W = dtype_info(wide)
    if torch is not None:  # vectorised conversions (numpy's float16 cast is scalar, 5x slower)
        ints = {2: np.int16, 4: np.int32, 8: np.int64}
        src = torch.from_numpy(nb.view(ints[nb.itemsize])).view(dtype_info(nd).torch_dtype)
        torch.from_numpy(out.view(ints[out.itemsize])).view(W.torch_dtype).copy_(src)
        return
    if nd == "bfloat16":
        if wide == "float32":  # a bfloat16 is the high half of its float32
            np.copyto(out, nb, casting="safe")
            np.left_shift(out, np.uint32(16), out=out)
            return
        np.copyto(out.view(W.numpy_dtype), (nb.astype(np.uint32) << np.uint32(16)).view(np.float32))
        return
    np.copyto(out.view(W.numpy_dtype), nb.view(dtype_info(nd).numpy_dtype), casting="safe")


def _exact_rows(u: np.ndarray, wide: str, nd: str, L: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ok, bits)``: per row of *L* elements of the *wide* float bits *u*, whether every
    element converts to *nd* exactly and back (as :func:`_narrowed` requires of a whole
    tensor), and the *nd* bits of those rows, in row order. Rows with a low mantissa bit set
    are ruled out first; only the others are converted."""
    u2 = u.reshape(-1, L)
    ok = _low_bits_zero(u2, wide, nd).all(axis=1)
    bits, exact = _narrow_cast(u2[ok], wide, nd)
    good = exact.all(axis=1)
    ok[ok] = good
    return ok, bits[good].reshape(-1)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, stop), ...]``: the runs of True in the bool vector *mask*."""
    d = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(),
                    strict=True))


def _move_rows(flat: np.ndarray, L: int, moves) -> None:
    """Within the contiguous *flat*: rows ``[src, src + cnt)`` (of *L* elements) to
    ``[dst, ...)`` for each ``(src, dst, cnt)``, in the given order; a move may overlap its
    own source (memmove, no temporary copy)."""
    isz = flat.itemsize * L
    base = flat.ctypes.data
    for src, dst, cnt in moves:
        ctypes.memmove(base + dst * isz, base + src * isz, cnt * isz)


def _widen_rows(nb, nd, out, wide, L, src_rows, dst_rows) -> None:
    """Rows *src_rows* of the narrow bits *nb* widened into rows *dst_rows* of *out*."""
    ar = np.arange(L, dtype=np.int64)
    idx = (np.asarray(src_rows, dtype=np.int64)[:, None] * L + ar).reshape(-1)
    part = np.empty(idx.size, dtype=out.dtype)
    _widen_into(np.ascontiguousarray(nb[idx]), nd, part, wide)
    out[(np.asarray(dst_rows, dtype=np.int64)[:, None] * L + ar).reshape(-1)] = part


_NARROW_CHILD = (SparseCodec, DictCodec, FloatCodec, RawCodec)
# the row split form needs this many narrow elements: it saves at least ~8 KB then (13-16
# bits each), which pays for its second child and a slower decode of small tensors
_SPLIT_MIN = 1 << 12
_RUN_COST_BYTES = 320_000  # a tree decode call per run (~40 us) ~ a memmove of this many bytes
_WIDEN_CHUNK = 1 << 16  # elements: shorter runs of narrow rows are widened together


@register_codec
class NarrowCodec(Codec):
    """A float tensor whose values are exact in a narrower float format, stored there.

    Checkpoints often hold float32 (or float64) values that were computed in float16 or
    bfloat16 (mixed-precision training saved in full precision, or a half-precision model
    cast up): their low mantissa bits are zero, which a zero-order coder of exponents plus
    raw mantissa bits stores verbatim. This codec converts the tensor to the narrowest
    format (``float16``, ``bfloat16``, or ``float32`` for float64) in which every element
    converts exactly and back, bit for bit, and encodes that with the best of the sparse,
    dictionary, float and raw codecs (child ``values``; ``meta["as"]`` names the format).
    Decoding widens the child's values exactly into the output (one pass through a
    half-size buffer). Not applicable to tensors with NaNs (a conversion may change a NaN's
    payload) or with any value the narrower format lacks.

    When only some rows (blocks of ``block_len`` elements) are exact in a narrower format
    (an embedding whose rows were trained in different precisions, rows never updated from
    a half-precision init), the *row split* form stores those rows narrow (child
    ``values``), the others as they are (child ``rest``), and a bitmap of the narrow rows
    (part ``rows``). Its decode puts the ``rest`` rows in their rows (straight there, a
    tree decode per run, or into the front of the output and moved up in place, whichever
    costs less) and widens the narrow rows into the gaps: no buffer of the tensor's size.
    """

    codec_id = "narrow"

    def _encode_bits(self, u, dt, block_len):
        best = None
        for nd in _NARROWER.get(dt.name, ()):
            nb = _narrowed(u, dt.name, nd)
            if nb is None:
                continue
            child = _best_bits(nb, dtype_info(nd), block_len, self.form, _NARROW_CHILD,
                               self.index)
            if best is None or child.nbytes < best.nbytes:
                best = child
        if best is not None:
            meta = {"form": self.form, "as": best.meta["dtype"]}
            return Encoded(self.codec_id, meta, {}, {}, {"values": best})
        split = self._encode_split(u, dt, block_len)
        if split is None:
            raise NotApplicable(f"narrow: no narrower format holds this {dt.name} tensor "
                                "or any of its rows")
        return split

    def _encode_split(self, u, dt, L):
        """The smallest row split form, or None when no row (or every row) narrows."""
        if not L or u.size // L < 2 or u.size % L:
            return None
        best, seen = None, []
        for nd in _NARROWER.get(dt.name, ()):
            ok, nb = _exact_rows(u, dt.name, nd, L)
            k = int(ok.sum())
            if k * L < _SPLIT_MIN or k == ok.size or any(np.array_equal(ok, s) for s in seen):
                continue  # too few to pay for a second decode, or the same rows again
            seen.append(ok)
            vals = _best_bits(nb, dtype_info(nd), L, self.form, _NARROW_CHILD, self.index)
            rest = _best_bits(u.reshape(-1, L)[~ok].reshape(-1), dt, L, self.form,
                              _NARROW_CHILD, self.index)
            enc = Encoded(self.codec_id, {"form": self.form, "as": nd, "row_len": int(L)},
                          {"rows": np.packbits(ok, bitorder="little")}, {},
                          {"values": vals, "rest": rest})
            if best is None or enc.nbytes < best.nbytes:
                best = enc
        return best

    def _parts(self, enc, n):
        """Validated ``(values child, rest child or None, wide, as, row mask or None, L)``."""
        wide, nd, m = enc.meta.get("dtype"), enc.meta.get("as"), enc.meta
        child, rest = enc.children.get("values"), enc.children.get("rest")
        if child is None or nd not in _NARROWER.get(wide, ()):
            raise CodecError("narrow: bad parts (format or values)")
        if "row_len" not in m:
            if set(enc.children) != {"values"} or enc.arrays:
                raise CodecError("narrow: bad parts (unexpected parts)")
            if child.meta.get("dtype") != nd or child.meta.get("n") != n \
                    or child.codec_id == "narrow":
                raise CodecError("narrow: values part does not match the tensor")
            return child, None, wide, nd, None, 0
        L, bm = m["row_len"], enc.arrays.get("rows")
        if (type(L) is not int or L < 1 or n % L or n // L < 2 or rest is None
                or set(enc.children) != {"values", "rest"} or set(enc.arrays) != {"rows"}):
            raise CodecError("narrow: bad row split parts (row_len, rows, values or rest)")
        R = n // L
        if bm.dtype != np.uint8 or bm.ndim != 1 or bm.size != (R + 7) // 8:
            raise CodecError("narrow: row bitmap does not match the tensor's rows")
        bits = np.unpackbits(bm, bitorder="little")
        if bits[R:].any():
            raise CodecError("narrow: row bitmap has bits past the last row")
        ok = bits[:R].astype(bool)
        k = int(ok.sum())
        if not 0 < k < R:
            raise CodecError("narrow: row bitmap marks no row or every row")
        for c, cd, cn in ((child, nd, k * L), (rest, wide, (R - k) * L)):
            if c.meta.get("dtype") != cd or c.meta.get("n") != cn or c.codec_id == "narrow":
                raise CodecError("narrow: values or rest part does not match the tensor")
        return child, rest, wide, nd, ok, L

    def _decode_bits(self, enc, out):
        self._plan_bits(enc, out.size)(out)

    def _plan_bits(self, enc, n):
        child, rest, wide, nd, ok, L = self._parts(enc, n)
        codec = get_codec(child.codec_id)
        nk = child.meta["n"]
        plan = codec._plan_bits(child, nk)
        nu, wu = dtype_info(nd).uint, dtype_info(wide).uint
        some = getattr(plan, "some_rows", None)
        if rest is not None:
            return self._plan_split(codec, child, plan, rest, wide, nd, ok, L)

        def run(out):
            if out.size != n or out.dtype != wu:
                raise CodecError("narrow: output does not match the tensor")
            nb = np.empty(n, dtype=nu)  # per call: a streaming layer keeps no extra buffer
            plan(nb)
            _widen_into(nb, nd, out, wide)

        Lc = codec._block_len(child)
        if some is not None and Lc:
            def some_rows(out, rows):  # the child's rows into a scratch, then widened
                nb = np.empty(n, dtype=nu)  # pages of rows not decoded are never touched
                some(nb, rows)
                _widen_rows(nb, nd, out, wide, Lc, rows, rows)

            run.some_rows = some_rows
        return run

    def _plan_split(self, codec, child, plan, rest, wide, nd, ok, L):
        """The row split form's decoder (see the class doc)."""
        n = ok.size * L
        nk, nr = child.meta["n"], rest.meta["n"]
        nu, wu = dtype_info(nd).uint, dtype_info(wide).uint
        some = getattr(plan, "some_rows", None)
        rcodec = get_codec(rest.codec_id)
        rplan = rcodec._plan_bits(rest, nr)
        rsome = getattr(rplan, "some_rows", None)
        # the rest rows: one tree decode into the front of the output, then moved up in
        # place (a memmove per run), or one tree decode per run straight into its rows; the
        # second saves the moved bytes but costs ~40 us per run, so it is taken when the
        # moves would cost more (and one thread decodes: the first splits rows over threads)
        moves, src = [], 0
        for a, b in _runs(~ok):
            if a != src:
                moves.append((src, a, b - a))
            src += b - a
        moves.reverse()  # last first: no move overwrites rows still to be moved
        moved = sum(c for _, _, c in moves) * L * np.dtype(wu).itemsize
        direct = (rsome is not None and rcodec._block_len(rest) == L
                  and len(moves) * _RUN_COST_BYTES < moved)
        rest_all, rest_rows = np.arange(nr // L), np.flatnonzero(~ok)
        # the narrow rows are consecutive in the values part: runs of at least _WIDEN_CHUNK
        # elements are widened in place; shorter runs together, through a small scratch
        groups, cur, off = [], None, 0
        for a, b in _runs(ok):
            ln = (b - a) * L
            if ln >= _WIDEN_CHUNK:
                groups.append((off, ln, a * L, None))
                cur = None
            else:
                if cur is None or cur[1] + ln > _WIDEN_CHUNK:
                    cur = [off, 0, 0, []]
                    groups.append(cur)
                cur[3].append((a * L, cur[1], ln))
                cur[1] += ln
            off += ln

        def run(out):
            if out.size != n or out.dtype != wu:
                raise CodecError("narrow: output does not match the tensor")
            flat = out if out.flags.c_contiguous else np.empty(n, dtype=wu)
            if direct and _threads["n"] <= 1:
                rsome(flat, rest_all, at=rest_rows)
            else:
                rplan(flat[:nr])
                _move_rows(flat, L, moves)
            nb = np.empty(nk, dtype=nu)  # per call, the narrow rows' size
            plan(nb)
            tmp = None
            for o, ln, dst, pieces in groups:
                if pieces is None:
                    _widen_into(nb[o : o + ln], nd, flat[dst : dst + ln], wide)
                    continue
                if tmp is None:
                    tmp = np.empty(_WIDEN_CHUNK, dtype=wu)
                _widen_into(nb[o : o + ln], nd, tmp[:ln], wide)
                for d, t, m in pieces:
                    flat[d : d + m] = tmp[t : t + m]
            if flat is not out:
                out[...] = flat

        if (some is not None and rsome is not None and codec._block_len(child) == L
                and rcodec._block_len(rest) == L):
            rank = np.cumsum(ok) - 1  # row -> its row in values (narrow rows) or rest
            rrank = np.cumsum(~ok) - 1

            def some_rows(out, rows):
                rows = np.asarray(rows, dtype=np.int64)
                m = ok[rows]
                rn, rr = rows[m], rows[~m]
                if rn.size:
                    nb = np.empty(nk, dtype=nu)  # untouched pages are never committed
                    some(nb, rank[rn])
                    _widen_rows(nb, nd, out, wide, L, rank[rn], rn)
                if rr.size:
                    rsome(out, rrank[rr], at=rr)

            run.some_rows = some_rows
        return run

    def _block_len(self, enc):
        child, rest = enc.children.get("values"), enc.children.get("rest")
        if child is None or child.codec_id == "narrow":
            return 0
        L = get_codec(child.codec_id)._block_len(child)
        if rest is None:
            return L
        if rest.codec_id == "narrow" or enc.meta.get("row_len") != L:
            return 0
        return L if get_codec(rest.codec_id)._block_len(rest) == L else 0

    def _to_text(self, enc, max_symbols):
        child, rest = enc.children.get("values"), enc.children.get("rest")
        if child is None:
            raise CodecError("narrow: missing values part")
        s = f"<as {enc.meta.get('as')}> " + get_codec(child.codec_id)._to_text(
            child, max_symbols)
        if rest is not None:
            n = int(child.meta.get("n", 0)) + int(rest.meta.get("n", 0))
            rows = np.flatnonzero(self._parts(enc, n)[4]).tolist()
            s = (f"<rows {rows}> " + s + "\n<rest> "
                 + get_codec(rest.codec_id)._to_text(rest, max_symbols))
        return s


# ---------------------------------------------------------------------------------------------
def _best_bits(u, dt, block_len, form, classes, index="compact", float_kw=None) -> Encoded:
    best = None
    for cls in classes:
        try:
            kw = float_kw if float_kw and cls is FloatCodec else {}
            enc = cls(form, index=index, **kw)._encode_bits(u, dt, block_len)
        except NotApplicable:
            continue
        if best is None or enc.nbytes < best.nbytes:
            best = enc
    best.meta.update({"dtype": dt.name, "n": int(u.size)})
    return best


def encode_best(
    x, *, form: str = BLOCK, block_len: int | None = None, candidates=None, verify: bool = True
) -> Encoded:
    """Encode with every applicable codec and keep the smallest exact one.

    *candidates* is a list of codec ids or configs (default: narrow, sparse, dict, float,
    raw).
    With *verify* the winner is decoded and compared bit for bit with the input.
    """
    if candidates is None:
        candidates = ["narrow", "sparse", "dict", "float", "raw"]
    best = None
    for c in candidates:
        cfg = {"id": c} if isinstance(c, str) else dict(c)
        if cfg["id"] != "raw":
            cfg.setdefault("form", form)
        codec = get_codec(cfg)
        try:
            enc = codec.encode(x, block_len=block_len)
        except NotApplicable:
            continue
        if best is None or enc.nbytes < best.nbytes:
            best = enc
    if best is None:
        raise CodecError("no codec applies")
    if verify:
        check_exact(x, best)
    return best


def check_exact(x, enc: Encoded) -> None:
    """Raise CodecError unless *enc* decodes to exactly the bits of *x*."""
    got = get_codec(enc.codec_id).decode(enc)
    if is_torch(x) and x.is_quantized:
        ok = (
            got.is_quantized
            and got.qscheme() == x.qscheme()
            and np.array_equal(bits_of(got.int_repr())[0], bits_of(x.int_repr())[0])
            and _quant_params(got)[0] == _quant_params(x)[0]
        )
    else:
        a, da, sa = bits_of(x)
        b, db, sb = bits_of(got)
        ok = da == db and sa == sb and np.array_equal(a, b)
    if not ok:
        raise CodecError(f"{enc.codec_id}: decoded tensor differs from the input (not exact)")


def decode(enc: Encoded, out=None):
    """Decode parts with the codec that made them."""
    return get_codec(enc.codec_id).decode(enc, out=out)


def prepare(enc: Encoded):
    """``f(out)``: decode *enc* into *out* again and again, its parts checked once
    (see :meth:`Codec.prepare`)."""
    return get_codec(enc.codec_id).prepare(enc)


# ---- torch quantized tensors -----------------------------------------------------------------
def _quant_params(x):
    qs = x.qscheme()
    name = str(qs).removeprefix("torch.")
    meta = {"qscheme": name, "qdtype": dtype_name(x)}
    arrays = {}
    if qs == torch.per_tensor_affine:
        meta["scale"] = float(x.q_scale()).hex()
        meta["zero_point"] = int(x.q_zero_point())
    elif qs == torch.per_channel_affine:
        meta["axis"] = int(x.q_per_channel_axis())
        arrays["q_scales"] = x.q_per_channel_scales().to(torch.float64).numpy().copy()
        arrays["q_zero_points"] = x.q_per_channel_zero_points().to(torch.int64).numpy().copy()
        meta["scales_dtype"] = dtype_name(x.q_per_channel_scales())
        meta["zp_dtype"] = dtype_name(x.q_per_channel_zero_points())
    else:
        raise NotApplicable(f"quantized tensors with qscheme {name} are not supported")
    if QUANT_REPR.get(meta["qdtype"]) is None:
        raise NotApplicable(f"quantized dtype {meta['qdtype']} is not supported")
    return meta, arrays


def _make_quantized(int_repr, q, arrays):
    import warnings

    with warnings.catch_warnings():  # torch 2.13 deprecates quantized-tensor creation
        warnings.simplefilter("ignore", UserWarning)
        return _make_quantized_impl(int_repr, q, arrays)


def _make_quantized_impl(int_repr, q, arrays):
    if not is_torch(int_repr):
        int_repr = torch.from_numpy(int_repr)
    qdt = getattr(torch, q["qdtype"])
    if q["qscheme"] == "per_tensor_affine":
        t = torch._make_per_tensor_quantized_tensor(
            int_repr, float.fromhex(q["scale"]), int(q["zero_point"])
        )
    else:
        scales = torch.from_numpy(np.array(arrays["q_scales"], dtype=np.float64))
        zps = torch.from_numpy(np.array(arrays["q_zero_points"], dtype=np.int64))
        t = torch._make_per_channel_quantized_tensor(
            int_repr,
            scales.to(getattr(torch, q["scales_dtype"])),
            zps.to(getattr(torch, q["zp_dtype"])),
            int(q["axis"]),
        )
    if t.dtype != qdt:
        raise CodecError(f"quantized: rebuilt {t.dtype}, expected {qdt}")
    return t
