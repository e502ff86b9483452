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

#: float formats: name -> (word dtype, exponent bits, mantissa bits), the IEEE
#: split; the kernels take any (exp_bits, mant_bits) with 1 + e + m = word bits.
FLOAT_FORMATS = {
    "float64": ("uint64", 11, 52),
    "float32": ("uint32", 8, 23),
    "bfloat16": ("uint16", 8, 7),
    "float16": ("uint16", 5, 10),
}

_IDX = ("wv_u8", "wv_u16", "wv_u32")  # canonical-index buffers of tree decodes
_WORDS = ("wv_u16", "wv_u32", "wv_u64")  # float word types
_CODES = ("wv_u8", "wv_u16")  # exponent code types

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
        *(f"wv_wm_extract_k<{t}>" for t in _U.values()),
        "wv_wm_rank_k",
        "wv_wm_select_k",
        *(f"wv_wm_level_float_k<{c}, {o}>" for c in _CODES for o in _WORDS),
    ),
    "wavelet_tree.cu": (
        *(f"wv_wt_access_k<{t}>" for t in _U.values()),
        "wv_wt_rank_k",
        "wv_wt_select_k",
        "wv_wt_plan_k",
        *(f"wv_wt_level_k<{i}>" for i in _IDX),
        *(f"wv_wt_level_sym_k<{i}, {o}>" for i in _IDX for o in _U.values()),
        *(f"wv_wt_level_float_k<{i}, {o}>" for i in _IDX for o in _WORDS),
    ),
    "fields.cu": tuple(f"wv_float_fields_k<{c}, {o}>" for c in _CODES for o in _WORDS),
}


def utype(itemsize: int) -> str:
    """Kernel type name of the unsigned integer of *itemsize* bytes."""
    return _U["u" + str(8 * itemsize)]


def level_kernel_name(itemsize: int) -> str:
    return f"wv_wm_level_k<{utype(itemsize)}>"


def access_kernel_name(itemsize: int) -> str:
    return f"wv_wm_access_k<{utype(itemsize)}>"


def wm_float_kernel_name(code_itemsize: int, word_itemsize: int) -> str:
    """Fused wavelet-matrix level-0 + float reassembly kernel."""
    return f"wv_wm_level_float_k<{utype(code_itemsize)}, {utype(word_itemsize)}>"


def wm_extract_kernel_name(itemsize: int) -> str:
    return f"wv_wm_extract_k<{utype(itemsize)}>"


def fields_kernel_name(code_itemsize: int, word_itemsize: int) -> str:
    return f"wv_float_fields_k<{utype(code_itemsize)}, {utype(word_itemsize)}>"


def wt_access_kernel_name(out_itemsize: int) -> str:
    return f"wv_wt_access_k<{utype(out_itemsize)}>"


def wt_level_kernel_name(idx_itemsize: int) -> str:
    """Inner tree level pass over canonical indices of *idx_itemsize* bytes."""
    return f"wv_wt_level_k<{utype(idx_itemsize)}>"


def wt_sym_kernel_name(idx_itemsize: int, out_itemsize: int) -> str:
    """Tree level-0 pass writing symbols."""
    return f"wv_wt_level_sym_k<{utype(idx_itemsize)}, {utype(out_itemsize)}>"


def wt_float_kernel_name(idx_itemsize: int, word_itemsize: int) -> str:
    """Tree level-0 pass fused with float reassembly."""
    return f"wv_wt_level_float_k<{utype(idx_itemsize)}, {utype(word_itemsize)}>"


def helper_names() -> set[tuple[str, str]]:
    """(file, expr) for every name the helpers above can produce (tests check
    each one is listed in KERNELS, hence instantiated)."""
    out = set()
    for s in (1, 2, 4, 8):
        out |= {("wavelet_matrix.cu", level_kernel_name(s)),
                ("wavelet_matrix.cu", access_kernel_name(s)),
                ("wavelet_matrix.cu", wm_extract_kernel_name(s)),
                ("wavelet_tree.cu", wt_access_kernel_name(s))}
        for i in (1, 2, 4):
            out.add(("wavelet_tree.cu", wt_sym_kernel_name(i, s)))
    for i in (1, 2, 4):
        out.add(("wavelet_tree.cu", wt_level_kernel_name(i)))
        for w in (2, 4, 8):
            out.add(("wavelet_tree.cu", wt_float_kernel_name(i, w)))
    for c in (1, 2):
        for w in (2, 4, 8):
            out.add(("wavelet_matrix.cu", wm_float_kernel_name(c, w)))
            out.add(("fields.cu", fields_kernel_name(c, w)))
    return out


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
