"""GPU twins of the wavelet structures (CuPy raw kernels; optional).

Importing this package never imports CuPy or touches a GPU; CuPy is imported
and the kernels (``*.cu`` beside this file) are compiled with NVRTC on first
use, once per device (``cupy.RawModule``, cached in memory and in CuPy's
on-disk kernel cache).

Objects come from ``.to_device()`` on the host structures::

    dbv = wavelet.BitVector(bits).to_device()
    r = dbv.rank1(cupy_positions)            # CuPy uint64 array

Interop with torch (zero copy, DLPack), on torch's current stream::

    dwt = wavelet.WaveletTree(codes, shape="huffman").to_device()
    with wavelet.cuda.torch_stream():       # FloatCodec parts -> bf16 words, fused
        bits = dwt.decode_float(table, 8, 7, planes)
    w = wavelet.cuda.to_torch(bits, torch.bfloat16)

or decode straight into a torch workspace: ``out=w.view(torch.int16)``.
"""

from __future__ import annotations

import importlib.util

_LAZY = {
    "DeviceBitVector": "_gpu_bitvector",
    "DeviceWaveletMatrix": "_gpu_wavelet",
    "DeviceWaveletTree": "_gpu_wavelet_tree",
    "FLOAT_FORMATS": "_gpu_wavelet",
    "merge_float_fields": "_gpu_fields",
}


def __getattr__(name):  # PEP 562: the wrappers import wavelet.cuda._module, so load them lazily
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"wavelet.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'wavelet.cuda' has no attribute {name!r}")

__all__ = [
    "DeviceBitVector",
    "DeviceWaveletMatrix",
    "DeviceWaveletTree",
    "FLOAT_FORMATS",
    "available",
    "merge_float_fields",
    "to_torch",
    "torch_stream",
]


def available() -> bool:
    """True when CuPy is installed and at least one CUDA device is usable."""
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, no device, broken install
        return False


def torch_stream():
    """A CuPy stream wrapping torch's current CUDA stream (use as a context
    manager), so kernels writing into torch memory are ordered with torch's work."""
    import cupy
    import torch

    return cupy.cuda.ExternalStream(
        torch.cuda.current_stream().cuda_stream, torch.cuda.current_device()
    )


_TORCH_INT = {2: "int16", 4: "int32", 8: "int64", 1: "uint8"}


def to_torch(arr, dtype=None):
    """Zero-copy CuPy -> torch (DLPack). *dtype* (e.g. ``torch.bfloat16``)
    reinterprets the bits of an unsigned bit-pattern array of the same width."""
    import cupy
    import torch

    a = arr
    if a.dtype.kind == "u" and a.dtype.itemsize > 1:  # torch lacks full uint16/32 support
        a = a.view(cupy.dtype(_TORCH_INT[a.dtype.itemsize]))
    t = torch.from_dlpack(a)
    if dtype is not None and t.dtype != dtype:
        t = t.view(dtype)
    return t
