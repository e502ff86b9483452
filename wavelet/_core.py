"""Private glue between Python and the C core: status codes, argument checks.

Every ``lib.*`` call in the package goes through a private module that uses
these helpers, so the checks happen in one order everywhere (STYLE.md):
ndarray, dtype (which also rejects a non-native byte order), C-contiguity,
alignment, writability.
"""

from __future__ import annotations

import operator

import numpy as np

from ._ffi import ffi, lib

__all__ = ["ffi", "lib", "WaveletError", "check", "as_index_array", "as_uint64", "buf", "wbuf"]


class WaveletError(ValueError):
    """Raised for invalid or corrupt data (a ``ValueError``)."""


def check(status: int, op: str, *, bad: int | None = None, what: str = "index") -> None:
    """Map a C status code to an exception whose message starts with *op*."""
    if status == lib.WV_OK:
        return
    if status == lib.WV_ERANGE:
        where = f" (query #{bad})" if bad is not None else ""
        raise IndexError(f"{op}: {what} out of range{where}")
    if status == lib.WV_EINVAL:
        raise ValueError(f"{op}: invalid argument")
    if status == lib.WV_ECORRUPT:
        raise WaveletError(f"{op}: data is corrupt or inconsistent")
    if status == lib.WV_ENOMEM:
        raise MemoryError(f"{op}: out of memory")
    if status == lib.WV_ENOTFOUND:
        raise ValueError(f"{op}: not found")
    raise WaveletError(f"{op}: unexpected status {status}")


def _require(a: np.ndarray, dtype, name: str, *, writable: bool = False) -> None:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype)}, got {a.dtype}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: array must be C-contiguous")
    if not a.flags.aligned:
        raise ValueError(f"{name}: array must be aligned")
    if writable and not a.flags.writeable:
        raise ValueError(f"{name}: array must be writable")


def buf(a: np.ndarray, ctype: str = "uint64_t[]", dtype=np.uint64, name: str = "array"):
    """Read-only cffi view of *a* after the checks (no copy)."""
    _require(a, dtype, name)
    return ffi.from_buffer(ctype, a, require_writable=False)


def wbuf(a: np.ndarray, ctype: str = "uint64_t[]", dtype=np.uint64, name: str = "out"):
    """Writable cffi view of *a* after the checks (no copy)."""
    _require(a, dtype, name, writable=True)
    return ffi.from_buffer(ctype, a, require_writable=True)


def as_index(x, name: str = "index") -> int:
    """A Python int from an integer-like scalar (rejects bool and floats)."""
    if isinstance(x, bool | np.bool_):
        raise TypeError(f"{name}: expected an integer, got bool")
    try:
        return operator.index(x)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {type(x).__name__}") from None


def is_scalar(x) -> bool:
    return not isinstance(x, np.ndarray | list | tuple | range)


def as_index_array(x, name: str = "indices") -> tuple[np.ndarray, tuple]:
    """Batch queries: any integer array-like -> (flat C-contiguous uint64, shape).

    Negative values raise IndexError; non-integer dtypes raise TypeError.
    """
    a = np.asarray(x)
    if a.size == 0:
        return np.empty(0, dtype=np.uint64), a.shape
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name}: expected an integer array, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.signedinteger) and a.min() < 0:
        raise IndexError(f"{name}: negative value {int(a.min())}")
    q = np.ascontiguousarray(a, dtype=np.uint64).reshape(-1)
    if not q.flags.aligned:
        q = q.copy()
    return q, a.shape


def aligned_empty(n: int, dtype=np.uint64, align: int = 64) -> np.ndarray:
    """An uninitialised 1-D array whose data starts on an *align*-byte boundary.

    Rank/select read one 512-bit sub-block per query; on a 64-byte boundary
    that is exactly one cache line (numpy alone only guarantees 16 bytes).
    """
    dt = np.dtype(dtype)
    raw = np.empty(n * dt.itemsize + align, dtype=np.uint8)
    off = (-raw.ctypes.data) % align
    return raw[off : off + n * dt.itemsize].view(dt)


def aligned_copy(a: np.ndarray, dtype=np.uint64) -> np.ndarray:
    out = aligned_empty(a.size, dtype)
    out[...] = a.reshape(-1)
    return out


def as_uint64(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.uint64)
