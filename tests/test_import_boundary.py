"""`import wavelet` works with numpy and cffi alone: no torch, no cupy, no GPU."""

import subprocess
import sys


def test_import_wavelet_pulls_no_torch_or_cupy():
    code = (
        "import sys, wavelet\n"
        "wavelet.BitVector([1, 0, 1]).rank1(2)\n"
        "bad = [m for m in ('torch', 'cupy', 'dnn_adapter') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_import_wavelet_with_torch_blocked():
    # simulate a machine without torch/cupy: importing them must not be attempted
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'cupy'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import wavelet\n"
        "print(wavelet.BitVector([1, 1]).rank1(2), wavelet.isa_level())\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_python_m_wavelet_reports_build():
    r = subprocess.run([sys.executable, "-m", "wavelet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "isa_level" in r.stdout
