"""Kernel sources, name expressions and the lazy CuPy loader (private).

One table, :data:`KERNELS`, lists every kernel the Python wrappers may launch,
by the exact ``name_expressions`` string of each ``.cu`` file. The loader, the
NVRTC compile check (``tools/check_kernels.py``) and the tests all read it, and
a test checks that every entry has an explicit instantiation in its ``.cu`` and
that every name the wrappers use is listed here.

Nothing here imports CuPy at import time: :func:`module` imports it on first use
and caches one ``cupy.RawModule`` per (file, device).
"""

from __future__ import annotations

import functools
from importlib import resources

__all__ = ["KERNELS", "PRELUDE", "OPTIONS", "source", "module", "function"]

#: Shared header prepended (textually) to every source. CuPy's on-disk kernel
#: cache hashes the source text only, not files it #includes, so we never
#: #include project headers.
PRELUDE = ("wv_common.cuh",)

#: NVRTC options (CuPy adds -arch for the current device and -ftz=true).
OPTIONS = ("-std=c++17",)

_U = {"u8": "wv_u8", "u16": "wv_u16", "u32": "wv_u32", "u64": "wv_u64"}

#: float formats: name -> (output word type, exponent bits, mantissa bits)
FLOAT_FORMATS = {
    "float32": ("wv_u32", 8, 23),
    "bfloat16": ("wv_u16", 8, 7),
    "float16": ("wv_u16", 5, 10),
}

KERNELS: dict[str, tuple[str, ...]] = {
    "bitvector.cu": (
        "wv_bv_access_k",
        "wv_bv_rank_k<0>",
        "wv_bv_rank_k<1>",
        "wv_bv_select_k<0>",
        "wv_bv_select_k<1>",
        "wv_bv_extract_bits_k",
        "wv_bv_extract_words_k",
    ),
    "wavelet_matrix.cu": (
        *(f"wv_wm_level_k<{t}>" for t in _U.values()),
        *(f"wv_wm_access_k<{t}>" for t in _U.values()),
        *(f"wv_wm_level_float_k<{o}, {e}, {m}>" for o, e, m in FLOAT_FORMATS.values()),
        *(f"wv_float_merge_k<wv_u8, {o}, {e}, {m}>" for o, e, m in FLOAT_FORMATS.values()),
    ),
}


def level_kernel_name(itemsize: int) -> str:
    return f"wv_wm_level_k<{_U['u' + str(8 * itemsize)]}>"


def access_kernel_name(itemsize: int) -> str:
    return f"wv_wm_access_k<{_U['u' + str(8 * itemsize)]}>"


def float_kernel_names(fmt: str) -> tuple[str, str]:
    """(fused level-0 kernel, standalone merge kernel) for a float format."""
    o, e, m = FLOAT_FORMATS[fmt]
    return f"wv_wm_level_float_k<{o}, {e}, {m}>", f"wv_float_merge_k<wv_u8, {o}, {e}, {m}>"


def _read(name: str) -> str:
    return resources.files("wavelet.cuda").joinpath(name).read_text(encoding="utf-8")


@functools.cache
def source(name: str) -> str:
    """Full compilable text of kernel file *name*: the prelude, then the file,
    with ``#line`` directives so compiler messages name the real file:line."""
    if name not in KERNELS:
        raise KeyError(f"unknown kernel source {name!r}")
    parts = [f'#line 1 "{p}"\n{_read(p)}' for p in (*PRELUDE, name)]
    return "\n".join(parts)


def _cupy():
    try:
        import cupy
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "wavelet GPU support needs CuPy: pip install 'succinct-compression[cuda]' "
            "(CUDA 13) or '[cuda12]'"
        ) from e
    return cupy


@functools.cache
def _module(name: str, device_id: int):
    cupy = _cupy()
    with cupy.cuda.Device(device_id):
        return cupy.RawModule(code=source(name), options=OPTIONS, name_expressions=KERNELS[name])


def module(name: str):
    """The compiled ``cupy.RawModule`` of *name* for the current device (cached)."""
    cupy = _cupy()
    return _module(name, cupy.cuda.Device().id)


def function(name: str, expr: str):
    """Kernel *expr* (a ``name_expressions`` string) from file *name*."""
    if expr not in KERNELS[name]:
        raise KeyError(f"{name}: no kernel {expr!r} in the name list")
    return module(name).get_function(expr)


def launch_config(n: int, threads: int = 256, *, per_thread: int = 1) -> tuple[int, int]:
    """(blocks, threads) for a grid-stride kernel over *n* work items."""
    cupy = _cupy()
    dev = cupy.cuda.Device()
    sms = dev.attributes["MultiProcessorCount"]
    want = -(-max(n, 1) // (threads * per_thread))
    return max(1, min(want, sms * 32)), threads
