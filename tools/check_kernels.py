"""Compile-check every CUDA kernel source with NVRTC, without a GPU.

CuPy's own compile path needs a device (it asks the driver for the arch), but
the low-level binding ``cupy.cuda.nvrtc`` does not; this is the check CI runs
on CPU machines (STYLE.md, GPU kernels). For every ``wavelet/cuda/*.cu`` it
compiles exactly the text the loader compiles (prelude + file), with the
loader's options, for each target arch, registers every name expression of
``wavelet.cuda._module.KERNELS`` and checks each one resolves to a lowered
(mangled) name in the PTX.

Usage::

    python tools/check_kernels.py [--arch compute_80 --arch compute_90] [-v]

Importable: :func:`check_all` returns a list of :class:`Result`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ARCHS = ("compute_80", "compute_90")


@dataclasses.dataclass
class Result:
    file: str
    arch: str
    ok: bool
    lowered: dict[str, str]
    log: str
    ptx_bytes: int = 0

    def __str__(self) -> str:
        state = "ok" if self.ok else "FAILED"
        s = f"{self.file} [{self.arch}] {state}: {len(self.lowered)} kernels"
        s += f", {self.ptx_bytes} B PTX"
        if not self.ok or self.log.strip():
            s += "\n" + self.log.strip()
        return s


def nvrtc_version() -> tuple[int, int]:
    from cupy.cuda import nvrtc

    return tuple(nvrtc.getVersion())


def compile_one(name: str, arch: str, options=None) -> Result:
    """NVRTC-compile kernel file *name* for *arch*; check all name expressions."""
    from cupy.cuda import nvrtc

    from wavelet.cuda import _module

    src = _module.source(name)
    opts = [*(options if options is not None else _module.OPTIONS), f"-arch={arch}", "-ftz=true"]
    exprs = _module.KERNELS[name]
    prog = nvrtc.createProgram(src, name, [], [])
    try:
        for e in exprs:
            nvrtc.addNameExpression(prog, e)
        try:
            nvrtc.compileProgram(prog, opts)
            ok = True
        except nvrtc.NVRTCError:
            ok = False
        log = nvrtc.getProgramLog(prog)
        if isinstance(log, bytes):
            log = log.decode(errors="replace")
        lowered: dict[str, str] = {}
        ptx_bytes = 0
        if ok:
            for e in exprs:
                try:
                    low = nvrtc.getLoweredName(prog, e)
                except nvrtc.NVRTCError as err:
                    ok = False
                    log += f"\nname expression {e!r} did not resolve: {err}"
                    continue
                lowered[e] = low.decode() if isinstance(low, bytes) else low
            ptx = nvrtc.getPTX(prog)
            ptx_bytes = len(ptx)
            text = ptx.decode(errors="replace") if isinstance(ptx, bytes) else ptx
            for e, low in lowered.items():
                if f".entry {low}" not in text:
                    ok = False
                    log += f"\nkernel {e!r} ({low}) missing from the PTX"
        return Result(name, arch, ok, lowered, log, ptx_bytes)
    finally:
        nvrtc.destroyProgram(prog)


def kernel_files() -> list[str]:
    from wavelet.cuda import _module

    return sorted(_module.KERNELS)


def check_all(archs=ARCHS) -> list[Result]:
    """Compile every kernel file for every arch; also flags .cu files on disk
    that the loader does not know (they would ship uncompiled)."""
    import wavelet.cuda

    results = [compile_one(f, a) for f in kernel_files() for a in archs]
    here = Path(wavelet.cuda.__file__).parent
    for p in sorted(here.glob("*.cu")):
        if p.name not in kernel_files():
            results.append(Result(p.name, "-", False, {}, "not listed in _module.KERNELS"))
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", action="append", help="NVRTC arch (default compute_80, compute_90)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print lowered names")
    args = ap.parse_args(argv)
    try:
        ver = nvrtc_version()
    except Exception as e:  # no cupy or no libnvrtc
        print(f"check_kernels: NVRTC unavailable: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    print(f"NVRTC {ver[0]}.{ver[1]}")
    results = check_all(tuple(args.arch) if args.arch else ARCHS)
    for r in results:
        print(r)
        if args.verbose:
            for e, low in r.lowered.items():
                print(f"    {e:45s} -> {low}")
    bad = [r for r in results if not r.ok]
    print(f"{len(results) - len(bad)}/{len(results)} compiled cleanly")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
