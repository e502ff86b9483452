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


def codec_parts(words: np.ndarray, exp_bits: int, mant_bits: int):
    """Float words -> dnn_adapter FloatCodec parts (codes, table, planes, top), the
    layout wavelet.merge_float_fields and the device float kernels read."""
    E, M = exp_bits, mant_bits
    W = 1 + E + M
    u = words.astype(np.uint64)
    field = (u >> np.uint64(M)) & np.uint64((1 << E) - 1)
    table, codes = np.unique(field, return_inverse=True)
    raw = (u & np.uint64((1 << M) - 1)) | ((u >> np.uint64(W - 1)) << np.uint64(M))
    nfull, rem = divmod(M + 1, 8)
    planes = np.empty((nfull, u.size), np.uint8)
    for p in range(nfull):
        planes[p] = (raw >> np.uint64(8 * p)) & np.uint64(0xFF)
    top = None
    if rem:
        t = ((raw >> np.uint64(8 * nfull)) & np.uint64((1 << rem) - 1)).astype(np.uint8)
        bits = np.unpackbits(t[:, None], axis=1, bitorder="little")[:, :rem]
        top = np.packbits(bits.reshape(-1), bitorder="little")
    cdt = np.uint8 if table.size <= 256 else np.uint16
    return codes.reshape(-1).astype(cdt), table.astype(np.uint16), planes, top
