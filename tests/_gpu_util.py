"""Helpers shared by the GPU tests: device detection and a host-side wavelet
matrix builder (the oracle layout the GPU decode is checked against)."""

from __future__ import annotations

import functools
import importlib.util

import numpy as np


@functools.cache
def gpu_skip_reason() -> str | None:
    """None when a CUDA device is usable through CuPy, else why not."""
    if importlib.util.find_spec("cupy") is None:
        return "CuPy is not installed (pip install -e '.[cuda]')"
    try:
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        return f"no usable CUDA device ({type(e).__name__}: {e})"
    if n == 0:
        return "no CUDA device"
    return None


def has_gpu() -> bool:
    return gpu_skip_reason() is None


def wm_levels(seq: np.ndarray, nlevels: int) -> tuple[list[np.ndarray], list[int]]:
    """Wavelet-matrix levels (bool arrays, level 0 = most significant bit) and
    zero counts of *seq* (Claude, Navarro, Ordonez 2015)."""
    cur = np.asarray(seq, dtype=np.uint64)
    levels, zeros = [], []
    for lv in range(nlevels):
        bits = ((cur >> np.uint64(nlevels - 1 - lv)) & np.uint64(1)).astype(bool)
        levels.append(bits)
        zeros.append(int((~bits).sum()))
        cur = np.concatenate([cur[~bits], cur[bits]])
    return levels, zeros


def float_split(bits: np.ndarray, ebits: int, mbits: int) -> tuple[np.ndarray, np.ndarray]:
    """IEEE bit patterns -> (exponent symbols uint8, raw stream uint8) in the
    packing documented in wavelet/cuda/wavelet_matrix.cu."""
    b = bits.astype(np.uint64)
    e = ((b >> np.uint64(mbits)) & np.uint64((1 << ebits) - 1)).astype(np.uint8)
    sign = (b >> np.uint64(ebits + mbits)) & np.uint64(1)
    v = (sign << np.uint64(mbits)) | (b & np.uint64((1 << mbits) - 1))
    r = 1 + mbits
    n = b.size
    stream = np.zeros(n * r, dtype=np.uint8)
    for k in range(r):
        stream[k::r] = ((v >> np.uint64(k)) & np.uint64(1)).astype(np.uint8)
    raw = np.packbits(stream, bitorder="little")
    return e, raw
