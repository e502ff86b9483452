"""GPU twins on a real device, bit-for-bit against the C core (marked gpu).

Skips with the reason (no CuPy / no driver / no device) everywhere else; the
same kernel logic is checked on the CPU by test_gpu_kernels_emulated.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wavelet

_spec = importlib.util.spec_from_file_location(
    "_gpu_util_dev", Path(__file__).with_name("_gpu_util.py")
)
_gu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_gu)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _gu.has_gpu(), reason=str(_gu.gpu_skip_reason())),
]

SIZES = [0, 1, 63, 64, 65, 2047, 2048, 2049, 4096 + 77, 70001, 1 << 20]
FLOATS = {"float32": (np.uint32, 8, 23), "bfloat16": (np.uint16, 8, 7),
          "float16": (np.uint16, 5, 10)}


@pytest.fixture(scope="module")
def cp():
    import cupy

    return cupy


def _bv(n, density, seed=0):
    rng = np.random.default_rng(seed + n)
    return wavelet.BitVector(rng.random(n) < density)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("density", [0.0, 0.02, 0.5, 1.0])
def test_bitvector_queries(cp, n, density):
    bv = _bv(n, density)
    d = bv.to_device()
    assert len(d) == n and d.count(1) == bv.count(1)
    rng = np.random.default_rng(1)
    if n:
        q = rng.integers(0, n, 10000, dtype=np.uint64)
        np.testing.assert_array_equal(d.access(cp.asarray(q)).get(), bv.access(q))
    q = np.concatenate([rng.integers(0, n + 1, 10000, dtype=np.uint64), [0, n]]).astype(np.uint64)
    np.testing.assert_array_equal(d.rank1(q).get(), bv.rank1(q))
    np.testing.assert_array_equal(d.rank0(q).get(), bv.rank0(q))
    for one in (0, 1):
        c = bv.count(one)
        if c:
            k = rng.integers(0, c, 10000, dtype=np.uint64)
            np.testing.assert_array_equal(d.select(one, k).get(), bv.select(one, k))
    assert d.to_host() == bv


@settings(max_examples=30, deadline=None)
@given(bits=st.lists(st.booleans(), max_size=5000), data=st.data())
def test_bitvector_hypothesis(cp, bits, data):
    bv = wavelet.BitVector(bits)
    d = bv.to_device()
    n = len(bits)
    q = np.array(data.draw(st.lists(st.integers(0, n), max_size=50)), dtype=np.uint64)
    np.testing.assert_array_equal(d.rank1(q).get(), bv.rank1(q))
    lo = data.draw(st.integers(0, n))
    hi = data.draw(st.integers(lo, n))
    np.testing.assert_array_equal(d.extract(lo, hi).get().astype(bool), bv.to_numpy()[lo:hi])
    np.testing.assert_array_equal(d.extract(lo, hi, packed=True).get(),
                                  wavelet.BitVector(bv.to_numpy()[lo:hi]).words)


def test_bitvector_errors(cp):
    bv = _bv(1000, 0.5)
    d = bv.to_device()
    with pytest.raises(IndexError, match=r"rank1: .*query #2"):
        d.rank1([0, 1000, 1001])
    with pytest.raises(IndexError, match="access"):
        d.access([1000])
    with pytest.raises(IndexError, match="select1"):
        d.select1([bv.count(1)])
    with pytest.raises(IndexError):
        d.access([-1])
    r = d.rank1(cp.asarray([5, 2000], dtype=cp.uint64), check=False).get()
    assert r[0] == bv.rank1(5) and r[1] == 2**64 - 1
    with pytest.raises(TypeError):
        d.rank1(cp.asarray([1.5]))
    with pytest.raises(IndexError):
        d.extract(10, 1001)
    out = cp.empty(100, dtype=cp.bool_)
    assert d.extract(0, 100, out=out) is out
    assert d.rank1(np.zeros((2, 3), np.int64)).shape == (2, 3)


def test_bitvector_loaded_mmap(cp, tmp_path):
    bv = _bv(100000, 0.3)
    p = tmp_path / "bv.wvlt"
    bv.save(p)
    d = wavelet.BitVector.load(p, mmap=True).to_device()
    q = np.arange(0, 100001, 7, dtype=np.uint64)
    np.testing.assert_array_equal(d.rank1(q).get(), bv.rank1(q))


def _wm(seq, L, concat, cp):
    from wavelet.cuda import DeviceWaveletMatrix

    levels, zeros = _gu.wm_levels(seq, L)
    if concat:
        big = wavelet.BitVector(np.concatenate(levels)) if L else wavelet.BitVector([])
        return DeviceWaveletMatrix.from_concatenated(big, seq.size, L)
    return DeviceWaveletMatrix.from_levels([wavelet.BitVector(b) for b in levels])


@pytest.mark.parametrize("n", [1, 33, 2049, 100003, 1 << 21])
@pytest.mark.parametrize("sigma", [2, 5, 64, 255, 70000, 1 << 32])
@pytest.mark.parametrize("concat", [False, True])
def test_wm_decode_access(cp, n, sigma, concat):
    rng = np.random.default_rng(n + sigma)
    seq = rng.integers(0, sigma, n, dtype=np.uint64)
    L = max(1, int(sigma - 1).bit_length())
    d = _wm(seq, L, concat, cp)
    got = d.decode().get()
    assert got.dtype == d.dtype
    np.testing.assert_array_equal(got, seq.astype(d.dtype))
    q = rng.integers(0, n, 5000, dtype=np.uint64)
    np.testing.assert_array_equal(d.access(q).get(), seq[q].astype(d.dtype))
    lo, hi = n // 3, n - n // 4
    np.testing.assert_array_equal(d.extract(lo, hi).get(), seq[lo:hi].astype(d.dtype))
    out = cp.empty(n, dtype=d.dtype)
    assert d.decode(out=out) is out


def _float_bits(ut, eb, mb, n, rng):
    width = 1 + eb + mb
    bits = rng.integers(0, 1 << width, n, dtype=np.uint64)
    e = rng.integers((1 << (eb - 1)) - 12, (1 << (eb - 1)) + 1, n, dtype=np.uint64)
    keep = rng.random(n) < 0.1  # random patterns: subnormals, inf, NaN payloads
    mask = np.uint64(((1 << eb) - 1) << mb)
    return np.where(keep, bits, (bits & ~mask) | (e << np.uint64(mb))).astype(ut)


@pytest.mark.parametrize("fmt", list(FLOATS))
@pytest.mark.parametrize("n", [1, 1000, 1 << 20])
def test_decode_float(cp, fmt, n):
    from wavelet.cuda import DeviceWaveletMatrix, merge_float_bits

    ut, eb, mb = FLOATS[fmt]
    rng = np.random.default_rng(n)
    bits = _float_bits(ut, eb, mb, n, rng)
    e, raw = _gu.float_split(bits, eb, mb)
    np.testing.assert_array_equal(merge_float_bits(cp.asarray(e), cp.asarray(raw), fmt).get(), bits)
    uniq, sym = np.unique(e, return_inverse=True)
    sym = sym.astype(np.uint8)
    L = max(1, int(uniq.size - 1).bit_length())
    levels, _ = _gu.wm_levels(sym, L)
    d = DeviceWaveletMatrix.from_levels([wavelet.BitVector(b) for b in levels])
    got = d.decode_float(cp.asarray(raw), fmt, lut=uniq.astype(np.uint32)).get()
    np.testing.assert_array_equal(got, bits)


def test_torch_zero_copy_on_torch_stream(cp):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    import wavelet.cuda as wc

    rng = np.random.default_rng(0)
    w = torch.randn(4096, dtype=torch.bfloat16)
    bits = w.view(torch.int16).numpy().view(np.uint16)
    e, raw = _gu.float_split(bits, 8, 7)
    uniq, sym = np.unique(e, return_inverse=True)
    L = max(1, int(uniq.size - 1).bit_length())
    levels, _ = _gu.wm_levels(sym.astype(np.uint8), L)
    d = wc.DeviceWaveletMatrix.from_levels([wavelet.BitVector(b) for b in levels])
    s = torch.cuda.Stream()
    with torch.cuda.stream(s), wc.torch_stream():
        out = d.decode_float(cp.asarray(raw), "bfloat16", lut=uniq.astype(np.uint32))
        t = wc.to_torch(out, torch.bfloat16)
        assert t.data_ptr() == out.data.ptr  # no copy
        y = t.float() * 1  # torch work ordered after the decode on the same stream
    s.synchronize()
    assert torch.equal(t.cpu().view(torch.int16), w.view(torch.int16))
    assert torch.equal(y.cpu(), w.float())
    del rng
