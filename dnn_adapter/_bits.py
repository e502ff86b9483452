"""Tensors <-> integer bit views (numpy), without copying or mutating the caller's data.

Every codec works on the *bits* of a tensor: a 1-D unsigned-integer numpy array of the
same itemsize as the element type (``float32`` -> ``uint32``, ``bfloat16`` -> ``uint16``,
``int8`` -> ``uint8`` ...). Comparing and decoding on these views keeps NaN payloads,
infinities, ``-0.0`` and subnormals exact: no floating-point operation ever touches a value.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

try:  # torch is optional for the bit layer (numpy arrays work without it)
    import torch
except ImportError:  # pragma: no cover
    torch = None


@dataclass(frozen=True)
class DType:
    """Element type as the codecs see it."""

    name: str  # canonical name, e.g. "float32", "bfloat16", "int8"
    itemsize: int
    exp_bits: int = 0  # 0: not an IEEE-like float
    mant_bits: int = 0

    @property
    def uint(self) -> np.dtype:
        return np.dtype(f"<u{self.itemsize}")

    @property
    def is_float(self) -> bool:
        return self.exp_bits > 0

    @property
    def torch_dtype(self):
        return getattr(torch, self.name)

    @property
    def numpy_dtype(self):
        if self.name == "bfloat16" or self.name.startswith("float8"):
            return None
        return np.dtype(self.name)


_TABLE = {
    d.name: d
    for d in (
        DType("float64", 8, 11, 52),
        DType("float32", 4, 8, 23),
        DType("float16", 2, 5, 10),
        DType("bfloat16", 2, 8, 7),
        DType("float8_e4m3fn", 1),
        DType("float8_e5m2", 1),
        DType("int8", 1),
        DType("uint8", 1),
        DType("int16", 2),
        DType("uint16", 2),
        DType("int32", 4),
        DType("uint32", 4),
        DType("int64", 8),
        DType("uint64", 8),
        DType("bool", 1),
    )
}

QUANT_REPR = {"qint8": "int8", "quint8": "uint8", "qint32": "int32"}


def dtype_info(name: str) -> DType:
    try:
        return _TABLE[name]
    except KeyError:
        raise TypeError(f"unsupported element type {name!r}") from None


def dtype_name(x) -> str:
    """Canonical element-type name of a torch tensor / numpy array / dtype."""
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.dtype
    if torch is not None and isinstance(x, torch.dtype):
        return str(x).removeprefix("torch.")
    return np.dtype(getattr(x, "dtype", x)).name


def is_torch(x) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def bits_of(x) -> tuple[np.ndarray, DType, tuple[int, ...]]:
    """Read-only 1-D unsigned bit view of *x* (copies only when *x* is not contiguous/CPU).

    Returns ``(bits, dtype, shape)``. The caller's tensor is never written to.
    """
    if is_torch(x):
        if x.is_quantized:
            raise TypeError("bits_of: pass quantized tensors through a codec (int_repr)")
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        dt = dtype_info(dtype_name(t))
        shape = tuple(t.shape)
        if dt.name == "bool":
            t = t.view(torch.uint8)
        elif dt.itemsize > 1 or dt.name.startswith("float8"):
            t = t.view(
                {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[dt.itemsize]
            )
        a = t.reshape(-1).numpy()
    else:
        a = np.asarray(x)
        dt = dtype_info(a.dtype.name)
        shape = a.shape
        a = np.ascontiguousarray(a).reshape(-1)
    u = a.view(dt.uint)
    if u.flags.writeable:
        u = u.view()
        u.flags.writeable = False
    return u, dt, tuple(int(s) for s in shape)


def empty_like_bits(dt: DType, shape, *, as_torch: bool):
    """A fresh output container and its writable 1-D bit view."""
    n = int(np.prod(shape, dtype=np.int64))
    if as_torch:
        t = torch.empty(tuple(shape), dtype=dt.torch_dtype)
        return t, out_bits(t, dt)
    a = np.empty(tuple(shape), dtype=dt.numpy_dtype or dt.uint)
    return a, a.reshape(n).view(dt.uint)


def out_bits(out, dt: DType) -> np.ndarray:
    """Writable 1-D bit view of a caller-given output (torch tensor or numpy array)."""
    if is_torch(out):
        if out.device.type != "cpu":
            raise ValueError("decode: out must be a CPU tensor")
        if not out.is_contiguous():
            raise ValueError("decode: out must be contiguous")
        if dtype_name(out) != dt.name:
            raise TypeError(f"decode: out has dtype {dtype_name(out)}, expected {dt.name}")
        t = out
        if dt.name == "bool":
            t = t.view(torch.uint8)
        elif dt.itemsize > 1 or dt.name.startswith("float8"):
            t = t.view(
                {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[dt.itemsize]
            )
        return t.reshape(-1).numpy().view(dt.uint)
    if not isinstance(out, np.ndarray):
        raise TypeError("decode: out must be a torch.Tensor or numpy.ndarray")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("decode: out must be C-contiguous and writable")
    if out.dtype.itemsize != dt.itemsize:
        raise TypeError(f"decode: out itemsize {out.dtype.itemsize} != {dt.itemsize}")
    return out.reshape(-1).view(dt.uint)


def crc32(a: np.ndarray, value: int = 0) -> int:
    """CRC-32 of an array's bytes (little-endian layout), continuing from *value* (the CRC-32
    of the bytes before them)."""
    # a flat byte view: also for empty arrays of any shape (a (0, n) plane array)
    return zlib.crc32(np.ascontiguousarray(a).reshape(-1).view(np.uint8), value) & 0xFFFFFFFF


def smallest_uint(maxval: int) -> np.dtype:
    for d in (np.uint8, np.uint16, np.uint32):
        if maxval <= np.iinfo(d).max:
            return np.dtype(d)
    return np.dtype(np.uint64)
