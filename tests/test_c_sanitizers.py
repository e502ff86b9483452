"""Build the C tests with AddressSanitizer + UBSan and run them (skipped without gcc)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# test source (under tests/c or fuzz/) -> (core sources, extra flags, argv)
C_TESTS = {
    "tests/c/test_bitvector.c": (["bitvector.c"], [], []),
    "tests/c/test_fields.c": (
        ["fields.c", "bitvector.c", "wavelet_matrix.c", "wavelet_tree.c", "huffman.c"], [], []
    ),
    "fuzz/fuzz_bv_validate.c": (["bitvector.c"], ["-DWV_FUZZ_STANDALONE", "-std=gnu11"], ["20000"]),
    # dnn_adapter's fused kernels (their own C, next to the package)
    "tests/c/test_kernels.c": (
        ["../dnn_adapter/csrc/kernels.c"], [f"-I{ROOT / 'dnn_adapter' / 'csrc'}"], []
    ),
}


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
@pytest.mark.parametrize("name", sorted(C_TESTS))
def test_c_under_asan_ubsan(tmp_path, name):
    exe = tmp_path / "t"
    core, flags, argv = C_TESTS[name]
    srcs = [str(ROOT / name)] + [str(ROOT / "wavelet_c" / s) for s in core]
    cmd = [
        "gcc",
        "-std=c11",
        "-O1",
        "-g",
        "-Wall",
        "-Wextra",
        "-fsanitize=address,undefined",
        "-fno-sanitize-recover=all",
        "-fno-omit-frame-pointer",
        f"-I{ROOT / 'wavelet_c'}",
        *flags,
        *srcs,
        "-o",
        str(exe),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 and "asan" in r.stderr.lower():
        pytest.skip("AddressSanitizer runtime not available: " + r.stderr[-300:])
    assert r.returncode == 0, r.stderr
    run = subprocess.run([str(exe), *argv], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-5000:]
    assert run.stdout.strip().endswith("ok")
