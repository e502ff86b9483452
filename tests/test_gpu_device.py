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
    bits = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + rng.integers(
        0, 2, n, dtype=np.uint64)
    if width < 64:
        bits &= np.uint64((1 << width) - 1)
    e = rng.integers((1 << (eb - 1)) - 12, (1 << (eb - 1)) + 1, n, dtype=np.uint64)
    keep = rng.random(n) < 0.1  # random patterns: subnormals, inf, NaN payloads, -0.0
    mask = np.uint64(((1 << eb) - 1) << mb)
    return np.where(keep, bits, (bits & ~mask) | (e << np.uint64(mb))).astype(ut)


SPLITS = [(5, 10), (8, 7), (8, 23), (11, 52), (10, 21), (9, 6)]  # IEEE + widened fields
_WORD = {16: np.uint16, 32: np.uint32, 64: np.uint64}


@pytest.mark.parametrize("E,M", SPLITS)
@pytest.mark.parametrize("n", [1, 1000, 1 << 20])
def test_merge_and_fused_float_vs_c(cp, E, M, n):
    """wavelet.cuda.merge_float_fields, the fused WM decode and the fused Huffman-tree
    decode all equal the C merge bit for bit."""
    import wavelet.cuda as wc

    ut = _WORD[1 + E + M]
    rng = np.random.default_rng(n + M)
    bits = _float_bits(ut, E, M, n, rng)
    codes, table, planes, top = _gu.codec_parts(bits, E, M)
    ref = np.empty(n, ut)
    wavelet.merge_float_fields(codes, table, E, M, planes, top, ref)
    np.testing.assert_array_equal(ref, bits)
    got = wc.merge_float_fields(cp.asarray(codes), table, E, M, cp.asarray(planes), top)
    np.testing.assert_array_equal(got.get(), ref)
    dwm = wavelet.WaveletMatrix(codes).to_device()
    np.testing.assert_array_equal(dwm.decode_float(table, E, M, planes, top).get(), ref)
    dwt = wavelet.WaveletTree(codes, shape="huffman").to_device()
    assert dwt.bulk_decode
    np.testing.assert_array_equal(dwt.decode_float(table, E, M, planes, top).get(), ref)
    lo, hi = n // 3, n - n // 5
    np.testing.assert_array_equal(
        dwt.decode_float(table, E, M, planes, top, start=lo, stop=hi).get(), ref[lo:hi])
    if table.size > 1:  # a short table: corrupt data, reported like the C core
        for f in (lambda: wc.merge_float_fields(cp.asarray(codes), table[:-1], E, M, planes, top),
                  lambda: dwt.decode_float(table[:-1], E, M, planes, top),
                  lambda: dwm.decode_float(table[:-1], E, M, planes, top)):
            with pytest.raises(wavelet.WaveletError):
                f()
    with pytest.raises(wavelet.WaveletError):  # an entry wider than exp_bits
        wc.merge_float_fields(cp.asarray(codes), np.full(table.size, 1 << E, np.uint16), E, M,
                              planes, top)


def test_float_bad_arguments(cp):
    import wavelet.cuda as wc

    codes = cp.zeros(10, cp.uint8)
    table = np.zeros(1, np.uint16)
    planes = np.zeros((1, 10), np.uint8)
    with pytest.raises(ValueError):
        wc.merge_float_fields(codes, table, 8, 8, planes, None)  # 17 bits
    with pytest.raises(ValueError):
        wc.merge_float_fields(codes, table, 8, 7, np.zeros((1, 9), np.uint8), None)
    with pytest.raises(ValueError):
        wc.merge_float_fields(codes, table, 5, 10, planes, None)  # top missing
    with pytest.raises(TypeError):
        wc.merge_float_fields(codes.astype(cp.float32), table, 8, 7, planes, None)
    with pytest.raises(ValueError):
        wc.merge_float_fields(codes, np.zeros(0, np.uint16), 8, 7, planes, None)
    with pytest.raises(TypeError):
        wc.merge_float_fields(codes, table, 8, 7, planes, None, cp.empty(10, cp.uint32))
    dwt = wavelet.WaveletTree(np.zeros(10, np.uint8)).to_device()
    with pytest.raises(IndexError):
        dwt.decode_float(table, 8, 7, planes, start=3, stop=11)


def test_torch_zero_copy_on_torch_stream(cp):
    """Fused Huffman decode of bf16 weights into a torch workspace (DLPack, no copy)
    on torch's current stream, and the returned words viewed as a torch tensor."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    import wavelet.cuda as wc

    w = torch.randn(1 << 16, dtype=torch.bfloat16)
    bits = w.view(torch.int16).numpy().view(np.uint16)
    codes, table, planes, top = _gu.codec_parts(bits, 8, 7)
    dwt = wavelet.WaveletTree(codes, shape="huffman").to_device()
    ws = torch.empty(w.numel(), dtype=torch.bfloat16, device="cuda")
    s = torch.cuda.Stream()
    with torch.cuda.stream(s), wc.torch_stream():
        dwt.decode_float(table, 8, 7, planes, top, out=ws.view(torch.int16))
        y = ws.float() * 1  # torch work ordered after the decode on the same stream
        out = dwt.decode_float(table, 8, 7, planes, top)
        t = wc.to_torch(out, torch.bfloat16)
        assert t.data_ptr() == out.data.ptr  # no copy
    s.synchronize()
    assert torch.equal(ws.cpu().view(torch.int16), w.view(torch.int16))
    assert torch.equal(t.cpu().view(torch.int16), w.view(torch.int16))
    assert torch.equal(y.cpu(), w.float())
    # through the C merge too: same bits
    ref = np.empty(bits.size, np.uint16)
    wavelet.merge_float_fields(codes, table, 8, 7, planes, top, ref)
    assert np.array_equal(ref, bits)


# ---- wavelet matrix queries -----------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 65, 2049, 4097, 100003])
@pytest.mark.parametrize("dtype,sigma", [(np.uint8, 2), (np.int16, 300), (np.uint32, 1 << 20),
                                         (np.int64, 1 << 40)])
def test_wm_from_host_queries(cp, n, dtype, sigma):
    rng = np.random.default_rng(n + sigma)
    seq = rng.integers(0, sigma, n).astype(dtype)
    wm = wavelet.WaveletMatrix(seq)
    d = wm.to_device()
    assert d.dtype == wm.dtype
    np.testing.assert_array_equal(d.decode().get(), seq)
    if n:
        q = rng.integers(0, n, 3000, dtype=np.uint64)
        got = d.access(q).get()
        assert got.dtype == wm.dtype
        np.testing.assert_array_equal(got, wm.access(q))
        c = seq[rng.integers(0, n, 3000)].astype(np.uint64)
        i = rng.integers(0, n + 1, 3000, dtype=np.uint64)
        np.testing.assert_array_equal(d.rank(c, i).get(), wm.rank(c, i))
        k = np.array([rng.integers(0, wm.rank(int(x), n)) for x in c[:500]], np.uint64)
        np.testing.assert_array_equal(d.select(c[:500], k).get(), wm.select(c[:500], k))
        with pytest.raises(IndexError):
            d.select([int(c[0])], [wm.rank(int(c[0]), n)])
        with pytest.raises(IndexError):
            d.rank([0], [n + 1])
        with pytest.raises(ValueError):
            d.rank(np.array([-1]), [0])
    for lo, hi in [(0, n), (n // 3, n - n // 4), (n // 2, n // 2 + 5), (n - 1, n)]:
        if 0 <= lo <= hi <= n:
            np.testing.assert_array_equal(d.extract(lo, hi).get(), seq[lo:hi])


# ---- wavelet tree ----------------------------------------------------------------------


def _check_tree(cp, seq, shape, n_q=3000, seed=0):
    wt = wavelet.WaveletTree(seq, shape=shape)
    d = wt.to_device()
    n = len(wt)
    rng = np.random.default_rng(seed)
    ref = wt.extract()
    assert d.dtype == wt.dtype and len(d) == n and d.nsymbols == wt.nsymbols
    np.testing.assert_array_equal(d.decode().get(), ref)
    out = cp.empty(n, dtype=wt.dtype)
    assert d.extract(out=out) is out
    for lo, hi in [(1, n), (n // 3, n - n // 4), (n // 2, n // 2 + 3), (n - 1, n), (0, 0)]:
        if 0 <= lo <= hi <= n:
            np.testing.assert_array_equal(d.extract(lo, hi).get(), ref[lo:hi])
    if n:
        q = rng.integers(0, n, n_q, dtype=np.uint64)
        np.testing.assert_array_equal(d.access(cp.asarray(q)).get(), wt.access(q))
        skey = np.unique(ref.astype(np.uint64))
        c = np.concatenate([skey[rng.integers(0, skey.size, n_q)], [0, 12345]]).astype(np.uint64)
        i = rng.integers(0, n + 1, c.size, dtype=np.uint64)
        np.testing.assert_array_equal(d.rank(c, i).get(), wt.rank(c, i))
        c = ref[rng.integers(0, n, 500)].astype(np.uint64)
        k = np.array([rng.integers(0, wt.rank(int(x), n)) for x in c], np.uint64)
        np.testing.assert_array_equal(d.select(c, k).get(), wt.select(c, k))
        with pytest.raises(IndexError, match="access"):
            d.access([n])
        with pytest.raises(IndexError, match="rank"):
            d.rank([0], [n + 1])
        with pytest.raises(IndexError, match="select"):
            d.select([int(c[0])], [wt.rank(int(c[0]), n)])
        assert d.rank(np.zeros((2, 3), np.int64), 0).shape == (2, 3)
    with pytest.raises(IndexError):
        d.extract(0, n + 1)
    return wt, d


@pytest.mark.parametrize("shape", ["balanced", "huffman"])
@pytest.mark.parametrize("n", SIZES)
def test_tree_queries(cp, shape, n):
    rng = np.random.default_rng(n)
    seq = np.minimum(rng.geometric(0.3, n) - 1, 50).astype(np.uint16)
    _check_tree(cp, seq, shape, seed=n)


@pytest.mark.parametrize("shape", ["balanced", "huffman"])
def test_tree_edges(cp, shape):
    _check_tree(cp, np.zeros(5000, np.uint8), shape)
    _check_tree(cp, np.full(3000, 2**64 - 1, np.uint64), shape)
    _check_tree(cp, np.array([2**63, 5, 2**64 - 1] * 1000, np.uint64), shape)
    _check_tree(cp, np.arange(70000, dtype=np.int32) % 3001, shape)  # u16 indices, signed
    _check_tree(cp, b"abracadabra" * 1000, shape)
    _check_tree(cp, np.zeros(0, np.uint8), shape)


def test_tree_huge_alphabet_fallback(cp):
    seq = np.random.default_rng(0).permutation(200000).astype(np.uint32)
    wt, d = _check_tree(cp, seq, "balanced", n_q=500)
    assert not d.bulk_decode  # > 2^16 internal nodes: extract uses point access


@settings(max_examples=30, deadline=None)
@given(seq=st.lists(st.integers(0, 300), max_size=5000),
       shape=st.sampled_from(["balanced", "huffman"]))
def test_tree_hypothesis(cp, seq, shape):
    _check_tree(cp, np.array(seq, np.uint16), shape, n_q=100)


def test_tree_loaded_mmap(cp, tmp_path):
    rng = np.random.default_rng(2)
    seq = np.minimum(rng.geometric(0.2, 300000), 60).astype(np.uint8)
    wt = wavelet.WaveletTree(seq, shape="huffman")
    p = tmp_path / "wt.wvlt"
    wt.save(p)
    d = wavelet.WaveletTree.load(p, mmap=True).to_device()
    np.testing.assert_array_equal(d.decode().get(), seq)


def test_ras_fused_float(cp):
    """A dnn_adapter-style RAS (flag, blocks closed by delimiters, end marker): the
    fused decode skips the control symbols and decodes one block by select."""
    rng = np.random.default_rng(7)
    nb, bl = 300, 257
    n = nb * bl
    bits = _float_bits(np.uint32, 8, 23, n, rng)
    codes, table, planes, top = _gu.codec_parts(bits, 8, 23)
    k = table.size
    seq = np.empty(n + nb + 2, np.uint16)
    seq[0], seq[-1] = k + 1, k + 3
    body = seq[1:-1].reshape(nb, bl + 1)
    body[:, :bl] = codes.reshape(nb, bl)
    body[:, bl] = k + 2
    wt = wavelet.WaveletTree(seq, shape="huffman")
    d = wt.to_device()
    got = d.decode_float(table, 8, 23, planes, top, lead=1, block=bl)
    np.testing.assert_array_equal(got.get(), bits)
    j = 123
    s0, s1 = int(wt.select(k + 2, j - 1)) + 1, int(wt.select(k + 2, j))
    got = d.decode_float(table, 8, 23, planes, top, start=s0, stop=s1, lead=1, block=bl)
    np.testing.assert_array_equal(got.get(), bits[j * bl:(j + 1) * bl])
