"""Compile checks of the CUDA kernels that run on every machine (no GPU needed).

(a) NVRTC through ``cupy.cuda.nvrtc`` (tools/check_kernels.py) for compute_80
    and compute_90, every name expression resolved (skips without CuPy/NVRTC);
(b) ``nvcc --ptx`` for sm_80 and sm_90 (skips without nvcc on PATH);
(c) every kernel name the Python wrappers launch is listed in
    ``wavelet.cuda._module.KERNELS``, and every listed name has a definition /
    explicit instantiation in its .cu file (needs neither nvcc nor CuPy).
"""

from __future__ import annotations

import importlib.util
import itertools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wavelet.cuda import _module

ROOT = Path(__file__).resolve().parent.parent
CUDA_DIR = ROOT / "wavelet" / "cuda"


def _load_check_kernels():
    spec = importlib.util.spec_from_file_location(
        "check_kernels", ROOT / "tools" / "check_kernels.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("check_kernels", mod)  # dataclasses look the module up
    spec.loader.exec_module(sys.modules["check_kernels"])
    mod = sys.modules["check_kernels"]
    return mod


def _nvrtc_reason() -> str | None:
    if importlib.util.find_spec("cupy") is None:
        return "CuPy not installed (the CI test env installs only .[test])"
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception as e:
        return f"NVRTC not loadable ({type(e).__name__}); pip install 'cuda-toolkit[nvrtc]==13.*'"
    return None


# ---- (a) NVRTC ------------------------------------------------------------------


@pytest.mark.skipif(_nvrtc_reason() is not None, reason=str(_nvrtc_reason()))
@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
@pytest.mark.parametrize("name", sorted(_module.KERNELS))
def test_nvrtc_compiles(name, arch):
    ck = _load_check_kernels()
    r = ck.compile_one(name, arch)
    assert r.ok, str(r)
    assert set(r.lowered) == set(_module.KERNELS[name])
    assert "warning" not in r.log.lower(), r.log


@pytest.mark.skipif(_nvrtc_reason() is not None, reason=str(_nvrtc_reason()))
def test_check_kernels_cli():
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "check_kernels.py")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "compiled cleanly" in out.stdout


# ---- (b) nvcc --------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("name", sorted(_module.KERNELS))
def test_nvcc_ptx(name, arch, tmp_path):
    src = tmp_path / name
    src.write_text(_module.source(name))
    ptx = tmp_path / (name + ".ptx")
    r = subprocess.run(
        ["nvcc", "--ptx", f"-arch={arch}", "-std=c++17", "-ftz=true", "-o", str(ptx), str(src)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr.lower(), r.stderr
    entries = len(re.findall(r"^\.(?:visible\s+)?\.entry\s", ptx.read_text(), re.M))
    assert entries == len(_module.KERNELS[name])


# ---- (c) name lists vs sources -------------------------------------------------------


def _expand_macros(text: str) -> str:
    """Expand the function-like #define instantiation helpers of a .cu (enough
    for our WV_INST_* macros: one level, no nesting)."""
    text = text.replace("\\\n", " ")
    defs = dict()
    for m in re.finditer(r"^#define\s+(\w+)\(([^)]*)\)(.*)$", text, re.M):
        defs[m.group(1)] = ([p.strip() for p in m.group(2).split(",")], m.group(3))
    out = []
    for line in text.splitlines():
        if line.lstrip().startswith("#define"):
            continue
        m = re.match(r"^\s*(\w+)\((.*)\)\s*(/\*.*)?$", line)
        if m and m.group(1) in defs:
            params, body = defs[m.group(1)]
            args = [a.strip() for a in m.group(2).split(",")]
            for p, a in zip(params, args, strict=True):
                body = re.sub(rf"\b{p}\b", a, body)
            out.append(body)
        else:
            out.append(line)
    return "\n".join(out)


def _norm(expr: str) -> str:
    return re.sub(r"\s+", "", expr)


def _defined_kernels(name: str) -> set[str]:
    text = _expand_macros((CUDA_DIR / name).read_text())
    plain = set(re.findall(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(', text))
    inst = {
        _norm(f"{m.group(1)}<{m.group(2)}>")
        for m in re.finditer(r"template\s+__global__\s+void\s+(\w+)\s*<([^>]*)>\s*\(", text)
    }
    return plain | inst


@pytest.mark.parametrize("name", sorted(_module.KERNELS))
def test_every_listed_kernel_is_instantiated(name):
    defined = _defined_kernels(name)
    listed = {_norm(e) for e in _module.KERNELS[name]}
    assert listed - defined == set(), f"listed but not instantiated in {name}"
    assert defined - listed == set(), f"instantiated in {name} but not in KERNELS"


def test_every_cu_file_is_listed():
    assert {p.name for p in CUDA_DIR.glob("*.cu")} == set(_module.KERNELS)
    for p in _module.PRELUDE:
        assert (CUDA_DIR / p).is_file()


def _used_names() -> set[tuple[str, str]]:
    """(file, expr) for every _m.function("file", "expr") call in the wrappers;
    f-string fields are expanded over 0/1 (the template flags we use)."""
    used = set()
    for py in (ROOT / "wavelet").glob("_gpu_*.py"):
        for m in re.finditer(r'function\(\s*"([^"]+)",\s*(f?)"([^"]+)"', py.read_text()):
            f, is_f, expr = m.groups()
            fields = re.findall(r"\{[^}]*\}", expr) if is_f else []
            for vals in itertools.product("01", repeat=len(fields)):
                e = expr
                for fld, v in zip(fields, vals, strict=True):
                    e = e.replace(fld, v, 1)
                used.add((f, e))
    return used


def test_every_used_kernel_is_listed():
    used = _used_names()
    assert used, "found no kernel launches in wavelet/_gpu_*.py"
    for f, e in used:
        assert f in _module.KERNELS, f
        assert e in _module.KERNELS[f], f"{f}: {e!r} is launched but not in KERNELS"
    # names produced by the helpers (the wrappers build most names through them)
    helpers = _module.helper_names()
    for f, e in helpers:
        assert e in _module.KERNELS[f], f"{f}: helper name {e!r} is not in KERNELS"
    # every listed kernel is reachable from Python (no dead instantiations): launched
    # by a literal, produced by a helper, or its template named in a wrapper
    src = "".join(p.read_text() for p in (ROOT / "wavelet").glob("_gpu_*.py"))
    listed = {(f, e) for f, es in _module.KERNELS.items() for e in es}
    named = {(f, e) for f, e in listed
             if f'"{e.split("<")[0]}{"<" if "<" in e else chr(34)}' in src}
    assert listed - used - helpers - named == set()


def test_wrappers_use_helpers_or_literals():
    """Every _m.function(...) call in the wrappers names its kernel with a literal
    or an _m.*_kernel_name helper, so the two checks above see every launch."""
    for py in (ROOT / "wavelet").glob("_gpu_*.py"):
        for m in re.finditer(r"_m\.function\(\s*\"[^\"]+\",\s*([^)\n]+)", py.read_text()):
            arg = m.group(1).strip()
            assert arg.startswith(('"', "_m.")) or arg in ("expr", "final_expr"), (py.name, arg)


def test_sources_have_no_std_headers():
    for name in (*_module.KERNELS, *_module.PRELUDE):
        text = (CUDA_DIR / name).read_text()
        assert not re.search(r"^\s*#\s*include", text, re.M), f"{name} #includes a header"


def test_import_wavelet_cuda_does_not_import_cupy():
    code = (
        "import sys, wavelet, wavelet.cuda; "
        "b = wavelet.BitVector([1, 0]); "
        "assert 'cupy' not in sys.modules, 'cupy imported'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_layout_constants_match_the_c_core():
    """The kernels mirror wavelet_c/wavelet.h; the layout constants must agree."""
    h = (ROOT / "wavelet_c" / "wavelet.h").read_text()
    cu = (CUDA_DIR / "wv_common.cuh").read_text()
    for name in ("WV_BV_BLOCK_BITS", "WV_BV_SEL_SAMPLE"):
        c = re.search(rf"#define\s+{name}\s+(\d+)", h).group(1)
        g = re.search(rf"#define\s+{name}\s+(\d+)ULL", cu).group(1)
        assert c == g, f"{name}: wavelet.h says {c}, wv_common.cuh says {g}"
