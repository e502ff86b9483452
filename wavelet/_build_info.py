"""Diagnostics: ISA level, compiler, optional GPU stack (``python -m wavelet``)."""

from __future__ import annotations

import importlib.util
import platform

from ._core import check, ffi, lib

_ISA_NAMES = {0: "portable", 1: "x86-64 popcnt", 2: "x86-64 popcnt+bmi2"}


def isa_level() -> int:
    """The kernel level in use (0 portable, 1 POPCNT (and SSSE3 where the bulk kernels use
    it), 2 POPCNT+BMI2; at level 2 a CPU with AVX-512 F/BW/VBMI also gets the AVX-512
    byte-table and bit-field kernels of the float and dictionary decode)."""
    out = ffi.new("int *")
    check(lib.wv_isa_get(out), "isa_level")
    return int(out[0])


def set_isa_level(level: int | None) -> int:
    """Force a kernel level (``None``: the best the CPU has). Returns the old one.

    Used by the tests to run every query on the portable fallback too.
    """
    old = isa_level()
    if level is None:
        out = ffi.new("int *")
        check(lib.wv_isa_max(out), "set_isa_level")
        level = int(out[0])
    st = lib.wv_isa_set(int(level))
    if st != lib.WV_OK:
        raise ValueError(f"set_isa_level: level {level} is not supported on this CPU")
    return old


def build_info() -> dict:
    """A dict describing the build and the machine (for bug reports)."""
    out = ffi.new("int *")
    lib.wv_isa_max(out)
    info = {
        "version": __import__("wavelet").__version__,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "isa_level": isa_level(),
        "isa_level_name": _ISA_NAMES.get(isa_level(), "?"),
        "isa_max": int(out[0]),
        "cupy": importlib.util.find_spec("cupy") is not None,
    }
    gpu = "not installed"
    if info["cupy"]:
        try:
            import cupy  # noqa: F401

            gpu = f"{cupy.cuda.runtime.getDeviceCount()} device(s)"
        except Exception as e:  # no driver / no device
            gpu = f"unavailable ({type(e).__name__})"
    info["gpu"] = gpu
    return info
